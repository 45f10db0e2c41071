#if os(Linux)
import Foundation
import Glibc
import Supervision

/// The agent's side of an LPAR's process: starts it, sends it commands, keeps its last
/// report, and notices when it dies (a guest failure or a crash of its L0 code): then the
/// LPAR is failed with the reason, and nothing else is touched.
///
/// Nothing here blocks the caller: the process's output is read, and its end awaited, on a
/// thread of the supervisor's own; waits are woken by the reports, not by polling. A command
/// sent to a process that has just died is not delivered (`send` says so) and never raises
/// SIGPIPE (`SignalPolicy`).
public final class LPARSupervisor: @unchecked Sendable {
    public let configuration: LPARConfiguration
    private let process = Process()
    private let input = Pipe()
    /// Guards everything below.
    private let lock = NSLock()
    /// Serializes writes, so that two commands never interleave on the pipe.
    private let writeLock = NSLock()
    private var last = LPARHostStatus(state: .booting)
    private var consoleLog: [String] = []
    /// Why the process ended, when it ended without a final report of its own.
    private var exitReason: String?
    private var ended = false
    /// The input pipe is closed, or its reader is gone: commands are no longer delivered.
    private var inputClosed = false
    private var inputHandleClosed = false
    private var waiters: [UInt64: Waiter] = [:]
    private var watchers: [AsyncStream<LPARHostStatus>.Continuation] = []
    private var nextWaiter: UInt64 = 0
    /// A shared-mode LPAR's CPU control group (its service ratio, and its cap).
    public private(set) var cpuGroup: CPUGroup?

    private struct Waiter {
        let predicate: @Sendable (LPARHostStatus, Bool) -> Bool
        let continuation: CheckedContinuation<Bool, Never>
        var timer: Task<Void, Never>?
    }

    /// Starts `executable lpar-host --config JSON` for the LPAR.
    public init(_ configuration: LPARConfiguration, executable: String) throws {
        SignalPolicy.installForSupervisor()
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
        let thread = Thread { [weak self] in
            let decoder = JSONDecoder()
            var buffer = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: 0x0a) {
                    let line = buffer[buffer.startIndex..<newline]
                    buffer = Data(buffer[(newline + 1)...])
                    guard let status = try? decoder.decode(LPARHostStatus.self, from: line) else { continue }
                    self?.update(status)
                }
            }
            // Its output ended: the process is gone (or about to be). Unless its last report
            // said why (a failure, a stop or a save), the way it ended is the reason.
            process.waitUntilExit()
            self?.ended(process.terminationReason, status: process.terminationStatus)
        }
        thread.name = "lpar-\(configuration.name)"
        thread.start()
    }

    private func ended(_ reason: Process.TerminationReason, status: Int32) {
        lock.lock()
        ended = true
        if !last.state.isFinal {
            exitReason = reason == .uncaughtSignal
                ? "the LPAR's process died of signal \(status) (\(Self.signalName(status)))"
                : "the LPAR's process exited with status \(status)"
        }
        let woken = takeWaiters()
        let final = currentStatus
        let finished = watchers
        watchers.removeAll()
        lock.unlock()
        for waiter in woken { waiter.timer?.cancel(); waiter.continuation.resume(returning: waiter.result) }
        for watcher in finished {
            watcher.yield(final)
            watcher.finish()
        }
    }

    private func update(_ status: LPARHostStatus) {
        lock.lock()
        last = status
        consoleLog.append(contentsOf: status.console)
        if consoleLog.count > 1000 { consoleLog.removeFirst(consoleLog.count - 1000) }
        let woken = takeWaiters()
        let current = currentStatus
        let watching = watchers
        lock.unlock()
        for waiter in woken { waiter.timer?.cancel(); waiter.continuation.resume(returning: waiter.result) }
        for watcher in watching { watcher.yield(current) }
    }

    /// Every report from now on, the newest first when the reader falls behind; the stream
    /// ends with the process (its last element is the final status, with the reason).
    public func updates() -> AsyncStream<LPARHostStatus> {
        let (stream, continuation) = AsyncStream.makeStream(of: LPARHostStatus.self, bufferingPolicy: .bufferingNewest(1))
        lock.lock()
        continuation.yield(currentStatus)
        if ended { continuation.finish() } else { watchers.append(continuation) }
        lock.unlock()
        return stream
    }

    /// With the lock held: the waiters whose condition now holds (true), and, once the process
    /// has ended, all the others (false: no report will come that could make theirs hold).
    private func takeWaiters() -> [(timer: Task<Void, Never>?, continuation: CheckedContinuation<Bool, Never>, result: Bool)] {
        let current = currentStatus
        var woken: [(timer: Task<Void, Never>?, continuation: CheckedContinuation<Bool, Never>, result: Bool)] = []
        for (id, waiter) in waiters {
            let holds = waiter.predicate(current, ended)
            guard holds || ended else { continue }
            waiters[id] = nil
            woken.append((waiter.timer, waiter.continuation, holds))
        }
        return woken
    }

    /// With the lock held: the last report, `failed` with the reason once the process is gone
    /// unexpectedly.
    private var currentStatus: LPARHostStatus {
        var status = last
        if let exitReason { status.state = .failed(reason: exitReason) }
        return status
    }

    /// The LPAR's last report; `failed` with the reason once its process is gone unexpectedly.
    public var status: LPARHostStatus {
        lock.lock()
        defer { lock.unlock() }
        return currentStatus
    }

    /// Whether the process has ended (and its end has been read).
    public var hasEnded: Bool {
        lock.lock()
        defer { lock.unlock() }
        return ended
    }

    public var console: [String] {
        lock.lock()
        defer { lock.unlock() }
        return consoleLog
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Sends one command; false when it could not be delivered because the process is gone
    /// (its end, and why, come with its next report or its exit).
    @discardableResult
    public func send(_ command: LPARHostCommand) -> Bool {
        guard var data = try? JSONEncoder().encode(command) else { return false }
        data.append(0x0a)
        writeLock.lock()
        defer { writeLock.unlock() }
        if lock.withLock({ inputClosed }) { return false }
        switch PipeWrite.all(Array(data), to: input.fileHandleForWriting.fileDescriptor) {
        case .written:
            return true
        case .peerGone, .failed:
            lock.withLock { inputClosed = true }
            return false
        }
    }

    /// Waits until `condition` holds on the last report; false when `timeout` seconds pass
    /// first, or when the process ends without it holding. Holds no thread while it waits.
    public func wait(timeout: Double, until condition: @escaping @Sendable (LPARHostStatus) -> Bool) async -> Bool {
        await waitFor(timeout: timeout) { status, _ in condition(status) }
    }

    /// Waits until the process has ended; false when `timeout` seconds pass first.
    public func waitForExit(timeout: Double) async -> Bool {
        await waitFor(timeout: timeout) { _, ended in ended }
    }

    private func waitFor(timeout: Double, _ predicate: @escaping @Sendable (LPARHostStatus, Bool) -> Bool) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            lock.lock()
            let holds = predicate(currentStatus, ended)
            if holds || ended {
                lock.unlock()
                continuation.resume(returning: holds)
                return
            }
            nextWaiter += 1
            let id = nextWaiter
            waiters[id] = Waiter(predicate: predicate, continuation: continuation)
            lock.unlock()
            let timer = Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(Int64(max(0, timeout) * 1000)))
                self?.expire(id)
            }
            lock.withLock {
                if waiters[id] != nil { waiters[id]?.timer = timer } else { timer.cancel() }
            }
        }
    }

    private func expire(_ id: UInt64) {
        lock.lock()
        let waiter = waiters.removeValue(forKey: id)
        let holds = waiter.map { $0.predicate(currentStatus, ended) } ?? false
        lock.unlock()
        waiter?.continuation.resume(returning: holds)
    }

    /// Asks the process to stop; kills it when it has not ended within `grace` seconds; and
    /// returns once it is gone. Never blocks a thread.
    public func stop(grace: Double = 5) async {
        if !hasEnded {
            send(.stop)
            if !(await waitForExit(timeout: grace)) {
                kill(process.processIdentifier, SIGKILL)
                _ = await waitForExit(timeout: 60)
            }
        }
        closeInput()
        cpuGroup?.remove()
    }

    /// Kills the process at once without waiting (its end is still read and reported).
    public func terminate() {
        if !hasEnded { kill(process.processIdentifier, SIGKILL) }
    }

    private func closeInput() {
        writeLock.lock()
        defer { writeLock.unlock() }
        let open = lock.withLock { () -> Bool in
            defer { inputClosed = true; inputHandleClosed = true }
            return !inputHandleClosed
        }
        if open { try? input.fileHandleForWriting.close() }
    }

    static func signalName(_ number: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGABRT: "SIGABRT",
            SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2",
            SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
        ]
        return names[number] ?? "signal \(number)"
    }

    deinit {
        if !ended { kill(process.processIdentifier, SIGKILL) }
        cpuGroup?.remove()
    }
}
#endif
