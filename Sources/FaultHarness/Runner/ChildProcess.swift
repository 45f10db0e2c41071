import Foundation
import Supervision
#if canImport(Glibc)
import Glibc
#endif

/// A process of the cluster under test (a controller or an agent) as the harness runs it: its
/// stderr goes to a log file, its stdout is read to its end on a thread of its own (its first
/// line is the address it listens on), and its end is awaited without blocking a thread.
///
/// The harness signals it (SIGKILL, SIGSTOP, SIGCONT, SIGTERM) but never writes to it, so a
/// child that has just exited can never raise SIGPIPE in the harness.
final class ChildProcess: @unchecked Sendable {
    let name: String
    let logPath: String
    private let process = Process()
    private let lock = NSLock()
    private var status: Int32?
    private var waiters: [CheckedContinuation<Int32, Never>] = []
    private var firstLine: String?
    private var lineWaiters: [CheckedContinuation<String, Never>] = []
    private(set) var paused = false

    /// Starts `executable arguments`, its stderr appended to `logPath`.
    init(name: String, executable: String, arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        self.name = name
        self.logPath = logPath
        SignalPolicy.installForSupervisor()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var variables = ProcessInfo.processInfo.environment
        variables["SWIFT_BACKTRACE"] = "enable=no"
        for (key, value) in environment { variables[key] = value }
        process.environment = variables
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw HarnessError("cannot write the log file \(logPath)") }
        log.seekToEndOfFile()
        log.write(Data("--- \(name) started: \(executable) \(arguments.joined(separator: " "))\n".utf8))
        let output = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = log
        process.terminationHandler = { [weak self] process in self?.ended(process.terminationStatus) }
        try process.run()
        try? log.close()
        ChildRegistry.shared.add(process.processIdentifier)
        let reader = output.fileHandleForReading
        let thread = Thread { [weak self] in
            var line = Data()
            var delivered = false
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                guard !delivered else { continue }
                line.append(chunk)
                if let newline = line.firstIndex(of: UInt8(ascii: "\n")) {
                    self?.deliver(String(decoding: line[..<newline], as: UTF8.self))
                    delivered = true
                }
            }
            if !delivered { self?.deliver(String(decoding: line, as: UTF8.self)) }
            try? reader.close()
        }
        thread.name = "stdout of \(name)"
        thread.start()
    }

    var pid: Int32 { process.processIdentifier }

    /// Whether the process has not ended (it may be paused).
    var isRunning: Bool { lock.withLock { status == nil } }

    /// The first line the process writes to stdout (empty when it ends without one).
    func line() async -> String {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let firstLine {
                lock.unlock()
                continuation.resume(returning: firstLine)
            } else {
                lineWaiters.append(continuation)
                lock.unlock()
            }
        }
    }

    /// The address in a first line `listening on HOST:PORT`, or an error quoting the log.
    func listeningPort() async throws -> Int {
        let text = await line()
        guard text.hasPrefix("listening on "), let port = text.split(separator: ":").last.flatMap({ Int($0) }) else {
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw HarnessError("\(name) did not start: '\(text)'; its log ends: \(log.suffix(1_500))")
        }
        return port
    }

    /// Sends `signal` unless the process has ended.
    func signal(_ signal: Int32) {
        lock.withLock {
            guard status == nil else { return }
            if signal == SIGSTOP { paused = true }
            if signal == SIGCONT || signal == SIGKILL { paused = false }
            _ = kill(process.processIdentifier, signal)
        }
    }

    /// Waits for the process to end; its exit status (or signal number).
    @discardableResult
    func ended() async -> Int32 {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let status {
                lock.unlock()
                continuation.resume(returning: status)
            } else {
                waiters.append(continuation)
                lock.unlock()
            }
        }
    }

    /// SIGKILL, and wait for the end.
    func kill9() async {
        signal(SIGKILL)
        await ended()
    }

    /// Resumes it if paused, asks it to stop (SIGTERM), and kills it when it has not ended
    /// within `grace` seconds.
    func stop(grace: Double = 10) async {
        signal(SIGCONT)
        signal(SIGTERM)
        let endedInTime = await FirstOf.run(within: .milliseconds(Int64(grace * 1_000)), { await self.ended(); return true }, orElse: { false })
        if !endedInTime { await kill9() }
    }

    private func ended(_ code: Int32) {
        lock.lock()
        status = code
        paused = false
        let resumed = waiters
        waiters = []
        lock.unlock()
        ChildRegistry.shared.remove(process.processIdentifier)
        for waiter in resumed { waiter.resume(returning: code) }
    }

    private func deliver(_ text: String) {
        lock.lock()
        guard firstLine == nil else { lock.unlock(); return }
        firstLine = text
        let resumed = lineWaiters
        lineWaiters = []
        lock.unlock()
        for waiter in resumed { waiter.resume(returning: text) }
    }
}

/// Every child the harness started and that has not ended, and every filesystem it mounted,
/// so that an interrupted harness (SIGINT, SIGTERM) takes its cluster down with it instead of
/// leaving processes and mounts behind.
final class ChildRegistry: @unchecked Sendable {
    static let shared = ChildRegistry()
    private let lock = NSLock()
    private var pids: Set<Int32> = []
    /// Mount points, innermost last.
    private var mounts: [String] = []
    private var sources: [any DispatchSourceSignal] = []

    func add(_ pid: Int32) { lock.withLock { _ = pids.insert(pid) } }
    func remove(_ pid: Int32) { lock.withLock { _ = pids.remove(pid) } }
    func mounted(_ path: String) { lock.withLock { mounts.append(path) } }
    func unmounted(_ path: String) { lock.withLock { mounts.removeAll { $0 == path } } }

    /// On SIGINT or SIGTERM: every child is killed, then the harness exits (status 130 or 143).
    func killChildrenOnInterrupt(cleanup: @escaping @Sendable () -> Void) {
        lock.withLock {
            guard sources.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM] {
                Glibc.signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { [weak self] in
                    self?.killAll()
                    cleanup()
                    exit(128 + signalNumber)
                }
                source.resume()
                sources.append(source)
            }
        }
    }

    func killAll() {
        let (all, points) = lock.withLock { (pids, mounts) }
        for pid in all {
            _ = kill(pid, SIGCONT)
            _ = kill(pid, SIGKILL)
        }
        for point in points.reversed() { _ = umount2(point, Int32(MNT_DETACH)) }
    }
}

/// A failure of the harness itself (not of the cluster under test): it cannot start, mount,
/// or reach what it needs. Said in one sentence.
public struct HarnessError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
