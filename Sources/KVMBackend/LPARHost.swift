#if os(Linux)
import Foundation
import Glibc
import KVM
public import Partitioner
import Supervision

/// The body of an LPAR's own process (`blade-agent lpar-host`): builds the machine, runs it,
/// takes commands from stdin and reports on stdout; exits when told to stop, when stdin
/// closes or stdout breaks (the agent is gone), or when the guest fails (exit code 3).
public enum LPARHostProcess {
    public static func run(_ configuration: LPARConfiguration) -> Int32 {
        SignalPolicy.installForSupervisor()
        let encoder = JSONEncoder()
        let agentGone = StopFlag()
        /// False when the agent is no longer there to read it.
        @discardableResult
        func emit(_ status: LPARHostStatus) -> Bool {
            guard var data = try? encoder.encode(status) else { return true }
            data.append(0x0a)
            guard PipeWrite.all(Array(data), to: STDOUT_FILENO) == .written else {
                agentGone.set()
                return false
            }
            return true
        }
        let machine: LPARMachine
        do {
            if let path = configuration.restore {
                machine = try LPARMachine(configuration, kvm: try KVM(), restoring: try LPARSnapshot.read(from: path))
            } else {
                machine = try LPARMachine(configuration, kvm: try KVM())
            }
        } catch let error as LPARError {
            emit(LPARHostStatus(state: .failed(reason: error.message)))
            return 2
        } catch {
            emit(LPARHostStatus(state: .failed(reason: "\(error)")))
            return 2
        }
        machine.start()
        let stopped = StopFlag()
        let saving = SaveRequest()
        let reader = Thread {
            let decoder = JSONDecoder()
            while let line = readLine() {
                guard let command = try? decoder.decode(LPARHostCommand.self, from: Data(line.utf8)) else {
                    FileHandle.standardError.write(Data("lpar-host: ignored a line that is not a command: \(line.prefix(200))\n".utf8))
                    continue
                }
                switch command {
                case .workload(let workload): machine.post(.workload, argument: workload.rawValue)
                case .crash: machine.post(.crash)
                case .readLBA(let sector): machine.post(.readLBA, argument: sector)
                case .peek(let address): machine.post(.peek, argument: address)
                case .exitLoop(let count): machine.post(.exitLoop, argument: count)
                case .pool(let cores): machine.setPool(cores)
                case .post(let mailbox, let argument): machine.post(mailbox, argument: argument)
                case .save(let path): saving.set(path)
                case .stop: stopped.set()
                }
            }
            stopped.set()   // stdin closed: the agent is gone
        }
        reader.start()
        var printed = 0
        while true {
            usleep(100_000)   // the report period
            let state = machine.state
            var status = LPARHostStatus(state: .running)
            switch state {
            case .failed(let reason): status.state = .failed(reason: reason)
            case .stopped: status.state = .stopped
            default:
                switch machine.guestState {
                case .booting?: status.state = .booting
                case .running?: status.state = .running
                case .ready?, nil: status.state = .ready
                }
            }
            status.workload = GuestABI.Workload(rawValue: machine.load(.workload))
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
                    status.state = .saved(path: path)
                    emit(status)
                    return 0
                } catch {
                    status.state = .failed(reason: "cannot save to \(path): \(error)")
                    emit(status)
                    return 2
                }
            }
            if stopped.isSet || agentGone.isSet {
                machine.stop()
                status.state = .stopped
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
#endif
