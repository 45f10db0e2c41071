import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The filesystem the controller's data directory lives on, when a scenario fails it.
///
/// - Full: a size-limited tmpfs the harness mounts, fills (every write that needs a new block
///   then fails with ENOSPC) and frees.
/// - Read-only: the kernel refuses `mount -o remount,ro` (EBUSY) while the controller holds
///   its database open for writing, so the data directory is on `errorfs` (deploy/harness/
///   errorfs.py, FUSE) over that tmpfs: a passthrough whose every write fails with EROFS while
///   the harness says so, as writes fail on a filesystem the kernel remounted read-only.
///
/// Needs root (mount(2)); read-only also needs Debian's python3-fusepy. A scenario with a disk
/// fault is refused in one line when they are missing.
final class StoreDisk: @unchecked Sendable {
    /// The tmpfs.
    let backing: String
    /// The errorfs mount over the tmpfs, when read-only faults are wanted.
    let overlay: String?
    private let control: String
    private let filler: String
    private var errorFS: ChildProcess?
    private let lock = NSLock()

    /// The tmpfs size: room for a run's store, small enough to fill in a moment.
    static let sizeBytes = 64 << 20

    init(directory: String, readOnlyFaults: Bool) async throws {
        backing = directory + "/store"
        filler = backing + "/filler"
        control = directory + "/errorfs-mode"
        overlay = readOnlyFaults ? directory + "/store-fs" : nil
        guard geteuid() == 0 else {
            throw HarnessError("the store's disk faults mount a tmpfs for the controller's data directory, which needs root")
        }
        var script: String?
        if readOnlyFaults {
            script = try Self.errorFSScript()
            try Self.checkFusepy()
        }
        try FileManager.default.createDirectory(atPath: backing, withIntermediateDirectories: true)
        guard mount("nestor-harness", backing, "tmpfs", 0, "size=\(Self.sizeBytes),mode=0700") == 0 else {
            throw HarnessError("cannot mount a tmpfs on \(backing): \(String(cString: strerror(errno)))")
        }
        ChildRegistry.shared.mounted(backing)
        try FileManager.default.createDirectory(atPath: backing + "/data", withIntermediateDirectories: true)
        guard let overlay, let script else { return }
        try "writable\n".write(toFile: control, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: overlay, withIntermediateDirectories: true)
        let process = try ChildProcess(name: "errorfs", executable: "/usr/bin/python3", arguments: [script, backing, overlay, control],
                                       logPath: directory + "/errorfs.log")
        errorFS = process
        ChildRegistry.shared.mounted(overlay)
        // errorfs says `mounted` once the kernel has given it the mount (or ends, saying why).
        let line = await FirstOf.run(within: .seconds(10), { await process.line() }, orElse: { "" })
        guard line == "mounted", Self.mounted(overlay) else {
            let log = (try? String(contentsOfFile: directory + "/errorfs.log", encoding: .utf8)) ?? ""
            throw HarnessError("errorfs did not mount on \(overlay) within 10 s (it said '\(line)'): \(log.suffix(500))")
        }
    }

    /// The controller's data directory.
    var dataDirectory: String { (overlay ?? backing) + "/data" }

    /// Writes a file until the tmpfs has no byte left: every write that needs room then fails
    /// with ENOSPC.
    func fill() throws {
        try lock.withLock {
            let descriptor = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            guard descriptor >= 0 else { throw HarnessError("cannot create \(filler): \(String(cString: strerror(errno)))") }
            defer { close(descriptor) }
            var chunk = 1 << 20
            let zeros = [UInt8](repeating: 0, count: chunk)
            while chunk >= 1 {
                let written = zeros.withUnsafeBytes { write(descriptor, $0.baseAddress!, chunk) }
                if written < 0 {
                    guard errno == ENOSPC else { throw HarnessError("filling \(filler): \(String(cString: strerror(errno)))") }
                    chunk /= 2
                }
            }
        }
    }

    /// Removes the filler: the tmpfs has room again.
    func free() {
        lock.withLock { _ = unlink(filler) }
    }

    /// Every write to the data directory fails with EROFS (true) or goes through again (false).
    func setReadOnly(_ readOnly: Bool) throws {
        guard overlay != nil else {
            if readOnly { throw HarnessError("the store's disk was mounted without errorfs: no read-only fault was planned") }
            return
        }
        try (readOnly ? "read-only\n" : "writable\n").write(toFile: control, atomically: true, encoding: .utf8)
    }

    /// Unmounts errorfs and the tmpfs (lazily: a process that still has a file open keeps it).
    func unmount() async {
        if let overlay {
            try? setReadOnly(false)
            _ = umount2(overlay, Int32(MNT_DETACH))
            ChildRegistry.shared.unmounted(overlay)
            await errorFS?.stop(grace: 5)
        }
        free()
        _ = umount2(backing, Int32(MNT_DETACH))
        ChildRegistry.shared.unmounted(backing)
    }

    static func mounted(_ path: String) -> Bool {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
    }

    /// deploy/harness/errorfs.py of the source tree this harness was built in, or
    /// NESTOR_HARNESS_ERRORFS.
    static func errorFSScript() throws -> String {
        if let path = ProcessInfo.processInfo.environment["NESTOR_HARNESS_ERRORFS"] { return path }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("deploy/harness/errorfs.py").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        throw HarnessError("the read-only disk fault needs deploy/harness/errorfs.py (not found above \(executable); set NESTOR_HARNESS_ERRORFS)")
    }

    static func checkFusepy() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", "import fusepy"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { throw HarnessError("the read-only disk fault needs /usr/bin/python3 (Debian's python3 and python3-fusepy)") }
        process.waitUntilExit()
        guard process.terminationStatus == 0, FileManager.default.fileExists(atPath: "/dev/fuse") else {
            throw HarnessError("the read-only disk fault needs FUSE: /dev/fuse and Debian's python3-fusepy (apt-get install python3-fusepy)")
        }
    }
}
