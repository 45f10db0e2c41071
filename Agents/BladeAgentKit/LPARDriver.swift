public import AgentCore
public import Partitioner

/// A report of a driver that nobody asked for: an LPAR that was up failed, an L2 VM changed.
public struct DriverEvent: Sendable, Equatable {
    public var lpar: String
    public var report: DriverReport

    public init(lpar: String, report: DriverReport) {
        self.lpar = lpar
        self.report = report
    }
}

/// How the agent runs LPARs on one backend: the simulated one (`SimLPARDriver`) or KVM
/// (`KVMLPARDriver`, each LPAR its own process), picked at start. Every operation returns
/// when it is done without blocking the caller's actor: blocking work runs on threads of the
/// driver's own.
public protocol LPARDriver: AnyObject, Sendable {
    /// The reports nobody asked for; ends at `shutdown`.
    var events: AsyncStream<DriverEvent> { get }
    /// The most L2 VMs one guest hypervisor runs on this backend; nil: no limit.
    var vmSlots: Int? { get }

    /// Starts the LPAR's guest: `started`, or `startFailed` with the reason.
    func start(_ launch: LPARLaunch) async -> DriverReport
    /// Stops the LPAR's guest (killing it when it does not stop): `stopped`.
    func stop(_ lpar: String) async -> DriverReport
    /// Deletes the LPAR's own disk image and zeroes its LUN range of the shared disk.
    func releaseDisk(_ lpar: String, luns: Range<Int>?) async -> DriverReport
    /// Moves the running shared LPARs onto the pool's cores.
    func setPool(_ cores: [Int]) async
    /// Creates an L2 VM in the LPAR's guest hypervisor; its start or failure comes as an event.
    func createVM(_ vm: VMRequest, slot: Int) async
    func deleteVM(partition: String, name: String, slot: Int) async
    /// The measurements that go with a heartbeat (the sim backend first runs every VM one
    /// slice of virtual time further).
    func heartbeatObservations() async -> [String: LPARObservation]
    /// The host process of each LPAR that has one (kvm: its `lpar-host`), by LPAR name.
    func processIDs() async -> [String: Int32]
    /// Stops every LPAR; the agent is shutting down.
    func shutdown() async
}

/// How a migration's pages travel: their count and what one page's payload is.
public struct MigrationMemoryLayout: Sendable, Equatable {
    public var pageCount: UInt64
    public var pageSize: UInt64
    /// Bytes of payload per page in the stream: the page's bytes, or the sim backend's word.
    public var payloadBytesPerPage: Int

    public init(pageCount: UInt64, pageSize: UInt64, payloadBytesPerPage: Int) {
        self.pageCount = pageCount
        self.pageSize = pageSize
        self.payloadBytesPerPage = payloadBytesPerPage
    }
}

/// Why a backend could not do a migration step.
public struct MigrationBackendError: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A driver whose LPARs can move (the backend seam of live migration: pause, snapshot,
/// dirty tracking). On the source: the memory with its dirty log, a pause, the final state;
/// on the target: a shell that takes pages and state, and starts from them.
public protocol LPARMigrating: Sendable {
    /// Starts the dirty log (every page dirty at first) and says how pages travel.
    func startOutgoing(_ lpar: String) async throws(MigrationBackendError) -> MigrationMemoryLayout
    /// The pages dirtied since the last call, the log cleared.
    func collectDirty(_ lpar: String) async throws(MigrationBackendError) -> [Range<UInt64>]
    /// The payload of each range of pages as the stream carries it, in one call (a round
    /// sends thousands of scattered pages).
    func readPages(_ lpar: String, _ ranges: [Range<UInt64>]) async throws(MigrationBackendError) -> [[UInt8]]
    /// Slows the guest's vCPUs to `percent` less of their time (0: full speed).
    func throttle(_ lpar: String, percent: Int) async
    /// Stops the guest's vCPUs; its memory and state hold still.
    func pause(_ lpar: String) async throws(MigrationBackendError)
    /// The state beyond memory (vCPUs, nested state, devices, the L2 VMs), taken while paused.
    func finalState(_ lpar: String) async throws(MigrationBackendError) -> [UInt8]
    func memoryHash(_ lpar: String) async throws(MigrationBackendError) -> UInt64
    /// The migration of `lpar` is over here without moving it: the guest runs on at full speed.
    func endOutgoing(_ lpar: String, resume: Bool) async

    /// Makes an empty shell for `spec`'s memory; says how pages travel.
    func prepareIncoming(_ spec: LPARSpec) async throws(MigrationBackendError) -> MigrationMemoryLayout
    /// Writes received pages: each run's payload from its first page on.
    func storePages(_ lpar: String, _ runs: [(first: UInt64, payload: [UInt8])]) async throws(MigrationBackendError)
    /// Loads the final state; returns the L2 VMs it brings.
    func loadState(_ lpar: String, _ state: [UInt8]) async throws(MigrationBackendError) -> [VMRequest]
    func incomingHash(_ lpar: String) async throws(MigrationBackendError) -> UInt64
    /// Drops what a shell received (the migration rolled back).
    func discardIncoming(_ lpar: String) async
    /// Starts the LPAR from what its shell received: `started` or `startFailed`.
    func resumeIncoming(_ launch: LPARLaunch) async -> DriverReport
}
