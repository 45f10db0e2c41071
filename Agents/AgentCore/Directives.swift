public import Partitioner

/// Everything an LPAR driver needs to start one LPAR's guest.
public struct LPARLaunch: Equatable, Sendable {
    public var spec: LPARSpec
    /// The disk capacity the claim gives the LPAR (its own image is made this large).
    public var diskBytes: UInt64
    /// A shared LPAR's cores: the blade's shared pool now.
    public var poolCores: [Int]

    public init(spec: LPARSpec, diskBytes: UInt64, poolCores: [Int]) {
        self.spec = spec
        self.diskBytes = diskBytes
        self.poolCores = poolCores
    }
}

/// How the core answers a command.
public enum CommandOutcome: Equatable, Sendable {
    case ok
    case refused(String)
}

/// What the agent's core asks its shell to do. The shell carries them out in order.
public enum AgentDirective: Equatable, Sendable {
    /// Start the LPAR's guest; the driver answers `started` or `startFailed`.
    case start(LPARLaunch)
    /// Stop the LPAR's guest; the driver answers `stopped`.
    case stop(lpar: String)
    /// Delete the LPAR's own disk image and zero its LUN range (when it has one); the driver
    /// answers `diskReleased` or `diskReleaseFailed`.
    case releaseDisk(lpar: String, luns: Range<Int>?)
    /// The blade's shared pool is now these cores: running shared LPARs move onto them.
    case setPool([Int])
    /// Ask the LPAR's guest hypervisor for an L2 VM in `slot`.
    case createVM(VMRequest, slot: Int)
    /// Ask the LPAR's guest hypervisor to delete the L2 VM in `slot`.
    case deleteVM(partition: String, name: String, slot: Int)
    /// Start sending the LPAR to another blade (its guest runs on while memory is copied).
    case sendMigration(OutgoingMigration)
    /// Accept the announced migration into the shell LPAR.
    case expectMigration(IncomingMigration)
    /// Stop migration `id` of the LPAR: the sender or receiver stops; on the source, a paused
    /// guest runs again (`resumeSource`).
    case endMigration(lpar: String, id: String, resumeSource: Bool)
    /// Start the LPAR from the state its migration brought; the driver answers `started` or
    /// `startFailed`.
    case resumeIncoming(LPARLaunch, migration: String)
    /// Answer the command `id`; `lpar` is the LPAR whose status goes with the answer.
    case reply(id: String, CommandOutcome, lpar: String?)
    /// Keep the LUN ranges of the shared disk (they outlive the agent's process).
    case saveLUNs([String: Range<Int>])
    /// Send heartbeat number `sequence` with the status of every LPAR.
    case sendHeartbeat(sequence: UInt64)
    /// Something an operator should see in the agent's log.
    case log(AgentLogEntry)
}

/// One line of the agent's log, with its level.
public struct AgentLogEntry: Equatable, Sendable {
    public enum Level: Equatable, Sendable { case info, notice, warning }
    public var level: Level
    public var message: String
    public var lpar: String?

    public init(_ level: Level, _ message: String, lpar: String? = nil) {
        self.level = level
        self.message = message
        self.lpar = lpar
    }
}
