import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The controller's exclusive hold on its data directory: an advisory lock (`flock`) on
/// `DIR/controller.lock`, which names the holder's pid, held until this value is released or
/// the process exits. A second controller on the same directory would act on the same blades
/// with its own leases (and see them all unreachable); it refuses to start instead. Taking
/// the lock also finds a data directory that cannot be written before any store is opened.
public final class DataDirectoryLock: Sendable {
    public let path: String
    private let descriptor: Int32

    public init(directory: String) throws(StoreError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .open(path: directory, reason: "the data directory cannot be created: \((error as NSError).localizedDescription)")
        }
        if access(directory, W_OK) != 0 {
            throw .open(path: directory, reason: "the data directory is not writable: \(String(cString: strerror(errno)))")
        }
        path = (directory as NSString).appendingPathComponent("controller.lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw .open(path: path, reason: "the lock file cannot be opened: \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let problem = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard problem == EWOULDBLOCK else {
                throw .open(path: path, reason: "the lock cannot be taken: \(String(cString: strerror(problem)))")
            }
            let holder = String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw .locked(directory: directory, holder: holder.isEmpty ? "unknown" : holder)
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || pwrite(fd, pid, pid.count, 0) != pid.count {
            let problem = String(cString: strerror(errno))
            close(fd)
            throw .open(path: path, reason: "the lock file cannot be written: \(problem)")
        }
        descriptor = fd
    }

    deinit { close(descriptor) }
}
