#if os(Linux)
import Foundation
import Glibc
import KVM
public import Partitioner

/// What the agent asks of an LPAR's process (one JSON object per line on its stdin).
public struct LPARHostCommand: Codable, Sendable, Equatable {
    public var command: String          // workload, crash, read-lba, peek, exit-loop, post, pool, save, stop
    public var workload: String?
    public var argument: UInt64?
    /// pool: the host cores of the shared pool.
    public var cores: [Int]?
    /// post: the mailbox command (GuestABI.Command).
    public var mailbox: UInt32?
    /// save: where the snapshot goes.
    public var path: String?

    public init(command: String, workload: String? = nil, argument: UInt64? = nil, cores: [Int]? = nil,
                mailbox: UInt32? = nil, path: String? = nil) {
        self.command = command
        self.workload = workload
        self.argument = argument
        self.cores = cores
        self.mailbox = mailbox
        self.path = path
    }
}

/// What an LPAR's process reports (one JSON object per line on its stdout, every 100 ms and
/// when it ends).
public struct LPARHostStatus: Codable, Sendable, Equatable {
    public var state: String            // booting, ready, running, failed, stopped
    public var reason: String?
    public var workload: String?
    public var operations: UInt64 = 0
    public var bytes: UInt64 = 0
    public var passes: UInt64 = 0
    public var checksum: UInt64 = 0
    public var errors: UInt64 = 0
    public var probeStatus: UInt64 = 0
    public var probeValue: UInt64 = 0
    public var commandsTaken: UInt64 = 0
    public var exits: UInt64 = 0
    public var console: [String] = []   // lines since the last report
    public var pinning: String?
    public var pid: Int32 = 0
    public var vcpus: UInt64 = 0
    /// Compute rounds of each vCPU.
    public var cpuOperations: [UInt64] = []
    /// The guest hypervisor's L2 VMs (an LPAR created with vmm), by slot.
    public var vms: [VMReport]?
    /// vCPU 0's nested-VMX counters (an LPAR created with vmm).
    public var nested: NestedCounters?

    public init(state: String) { self.state = state }
}

/// The body of an LPAR's own process (`blade-agent lpar-host`): builds the machine, runs it,
/// takes commands from stdin and reports on stdout; exits when told to stop, when stdin
/// closes (the agent is gone), or when the guest fails (exit code 3).
public enum LPARHostProcess {
    public static func run(_ configuration: LPARConfiguration) -> Int32 {
        let output = FileHandle.standardOutput
        let encoder = JSONEncoder()
        func emit(_ status: LPARHostStatus) {
            guard var data = try? encoder.encode(status) else { return }
            data.append(0x0a)
            output.write(data)
        }
        let machine: LPARMachine
        do {
            if let path = configuration.restore {
                machine = try LPARMachine(configuration, kvm: try KVM(), restoring: try LPARSnapshot.read(from: path))
            } else {
                machine = try LPARMachine(configuration, kvm: try KVM())
            }
        } catch let error as LPARError {
            var status = LPARHostStatus(state: "failed")
            status.reason = error.message
            emit(status)
            return 2
        } catch {
            var status = LPARHostStatus(state: "failed")
            status.reason = "\(error)"
            emit(status)
            return 2
        }
        machine.start()
        let stopped = StopFlag()
        let saving = SaveRequest()
        let reader = Thread {
            while let line = readLine() {
                guard let command = try? JSONDecoder().decode(LPARHostCommand.self, from: Data(line.utf8)) else { continue }
                switch command.command {
                case "workload":
                    let workload = command.workload.flatMap(GuestABI.Workload.init(name:)) ?? .idle
                    machine.post(.workload, argument: workload.rawValue)
                case "crash": machine.post(.crash)
                case "read-lba": machine.post(.readLBA, argument: command.argument ?? 0)
                case "peek": machine.post(.peek, argument: command.argument ?? 0)
                case "exit-loop": machine.post(.exitLoop, argument: command.argument ?? 0)
                case "pool": machine.setPool(command.cores ?? [])
                case "post":
                    if let raw = command.mailbox, let mailbox = GuestABI.Command(rawValue: raw) {
                        machine.post(mailbox, argument: command.argument ?? 0)
                    }
                case "save":
                    if let path = command.path { saving.set(path) }
                case "stop": stopped.set()
                default: break
                }
            }
            stopped.set()   // stdin closed: the agent is gone
        }
        reader.start()
        var printed = 0
        while true {
            usleep(100_000)
            var status = LPARHostStatus(state: "running")
            let state = machine.state
            switch state {
            case .failed(let reason): status.state = "failed"; status.reason = reason
            case .stopped: status.state = "stopped"
            default: status.state = machine.load(.state) == 0 ? "booting" : (machine.load(.state) == 2 ? "running" : "ready")
            }
            status.workload = GuestABI.Workload(rawValue: machine.load(.workload)).map(\.name)
            status.operations = machine.load(.operations)
            status.bytes = machine.load(.bytes)
            status.passes = machine.load(.passes)
            status.checksum = machine.load(.checksum)
            status.errors = machine.load(.errors)
            status.probeStatus = machine.load(.probeStatus)
            status.probeValue = machine.load(.probeValue)
            status.commandsTaken = machine.load(.ackSeq)
            status.exits = machine.exits
            status.pinning = machine.pinningNote ?? {
                let cores = machine.pinnedCores
                return cores.isEmpty ? nil : cores.sorted { $0.key < $1.key }.map { "vCPU \($0.key) on host CPU \($0.value)" }.joined(separator: ", ")
            }()
            status.vcpus = machine.load(.vcpus)
            status.cpuOperations = (0..<Int(min(status.vcpus, UInt64(GuestABI.maxVCPUs)))).map { machine.cpuOperations($0) }
            status.pid = getpid()
            if configuration.vmx != nil {
                status.vms = (0..<GuestABI.VMTable.slots).compactMap { machine.vmReport(slot: $0) }
                status.nested = machine.vmxCounters
            }
            let console = machine.console
            if console.count > printed { status.console = Array(console[printed...]) }
            printed = console.count
            if let path = saving.path {
                // Pause, save, and end: the LPAR goes on from the snapshot, in another process.
                machine.pause()
                do {
                    try machine.snapshot().write(to: path)
                    status.state = "saved"
                    status.reason = path
                    emit(status)
                    return 0
                } catch {
                    status.state = "failed"
                    status.reason = "cannot save to \(path): \(error)"
                    emit(status)
                    return 2
                }
            }
            if stopped.isSet {
                machine.stop()
                status.state = "stopped"
                emit(status)
                return 0
            }
            emit(status)
            if case .failed = state { return 3 }
        }
    }
}

final class SaveRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ path: String) { lock.lock(); value = path; lock.unlock() }
    var path: String? { lock.lock(); defer { lock.unlock() }; return value }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// The agent's side of an LPAR's process: starts it, sends it commands, keeps its last
/// report, and notices when it dies (a guest failure or a crash of its L0 code): then the
/// LPAR is failed with the reason, and nothing else is touched.
public final class LPARSupervisor: @unchecked Sendable {
    public let configuration: LPARConfiguration
    private let process = Process()
    private let input = Pipe()
    private let lock = NSLock()
    private var last = LPARHostStatus(state: "booting")
    private var consoleLog: [String] = []
    private var exitReason: String?
    /// A shared-mode LPAR's CPU control group (its service ratio, and its cap).
    public private(set) var cpuGroup: CPUGroup?

    /// Starts `executable lpar-host --config JSON` for the LPAR.
    public init(_ configuration: LPARConfiguration, executable: String) throws {
        self.configuration = configuration
        process.executableURL = URL(fileURLWithPath: executable)
        let json = String(decoding: try JSONEncoder().encode(configuration), as: UTF8.self)
        process.arguments = ["lpar-host", "--config", json]
        // A crash must end the process at once, so the LPAR is failed at once (the Swift
        // runtime would otherwise spend seconds printing a backtrace first).
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        if let share = configuration.share {
            switch CPUGroup.create(name: configuration.name, share: share, vcpus: share.vcpus) {
            case .success(let group):
                do {
                    try group.add(pid: process.processIdentifier)
                    cpuGroup = group
                } catch {
                    group.remove()
                    kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                    throw LPARError(lpar: configuration.name, "cannot put its process into \(group.path): \(error.localizedDescription)")
                }
            case .failure(let error):
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw error
            }
        }
        let reader = output.fileHandleForReading
        let process = self.process
        Thread { [weak self] in
            var buffer = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: 0x0a) {
                    let line = buffer[buffer.startIndex..<newline]
                    buffer = Data(buffer[(newline + 1)...])
                    guard let status = try? JSONDecoder().decode(LPARHostStatus.self, from: line) else { continue }
                    self?.update(status)
                }
            }
            // Its output ended: the process is gone. Unless its last report said why (a
            // failure or a stop), the way it ended is the reason.
            process.waitUntilExit()
            self?.ended(process.terminationReason, status: process.terminationStatus)
        }.start()
    }

    private func ended(_ reason: Process.TerminationReason, status: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if last.state == "failed" || last.state == "stopped" || last.state == "saved" { return }
        exitReason = reason == .uncaughtSignal
            ? "the LPAR's process died of signal \(status)"
            : "the LPAR's process exited with status \(status)"
    }

    private func update(_ status: LPARHostStatus) {
        lock.lock()
        defer { lock.unlock() }
        last = status
        consoleLog.append(contentsOf: status.console)
        if consoleLog.count > 1000 { consoleLog.removeFirst(consoleLog.count - 1000) }
    }

    /// The LPAR's last report; `failed` with the reason once its process is gone unexpectedly.
    public var status: LPARHostStatus {
        lock.lock()
        defer { lock.unlock() }
        var status = last
        if let exitReason {
            status.state = "failed"
            status.reason = exitReason
        }
        return status
    }

    public var console: [String] {
        lock.lock()
        defer { lock.unlock() }
        return consoleLog
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    public func send(_ command: LPARHostCommand) {
        guard var data = try? JSONEncoder().encode(command) else { return }
        data.append(0x0a)
        try? input.fileHandleForWriting.write(contentsOf: data)
    }

    /// Waits until `condition` holds on the last report, or `timeout` seconds pass, without
    /// holding a thread.
    public func wait(timeout: Double, until condition: (LPARHostStatus) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(status) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition(status)
    }

    /// Asks the process to stop, then makes sure it is gone.
    public func stop() {
        if process.isRunning {
            send(LPARHostCommand(command: "stop"))
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        try? input.fileHandleForWriting.close()
        cpuGroup?.remove()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        cpuGroup?.remove()
    }
}
#endif
