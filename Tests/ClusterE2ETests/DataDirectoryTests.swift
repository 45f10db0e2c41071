import Foundation
import Testing

/// One data directory serves one controller, and a directory that cannot be written is
/// refused at start, in one line, before any request could fail on it.
extension EndToEnd { @Suite struct DataDirectoryTests {
    /// Runs `cluster-controller run` to its end (it must refuse to start); its status and stderr.
    func refusedStart(_ cluster: ClusterHarness, dataDirectory: String) throws -> (status: Int32, stderr: String) {
        try ClusterHarness.runToEnd("cluster-controller", ["run", "--listen", "127.0.0.1:0", "--data-dir", dataDirectory, "--pki-dir", cluster.pki.path])
    }

    @Test func aSecondControllerOnTheSameDataDirectoryRefusesToStartNamingTheHolder() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try cluster.startController()
        let holder = try #require(cluster.controllerPID)
        let second = try refusedStart(cluster, dataDirectory: cluster.directory + "/data")
        #expect(second.status == 2, "\(second.stderr)")
        #expect(second.stderr == "cluster-controller: the data directory \(cluster.directory)/data is in use by another controller (pid \(holder)); one data directory serves one controller\n")
        // The first one serves on, untouched.
        #expect(try await cluster.ctl("admin/ops", ["tenant", "list"]).status == 0)
        // Once it is gone, the directory is free again.
        cluster.killController()
        try cluster.startController()
        #expect(try await cluster.ctl("admin/ops", ["tenant", "list"]).status == 0)
    }

    @Test(.enabled(if: getuid() == 0, "mounting a read-only tmpfs needs root"))
    func aReadOnlyDataDirectoryIsRefusedInOneLine() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        let directory = cluster.directory + "/read-only"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let mounted = try ClusterHarness.runToEnd("/bin/mount", ["-t", "tmpfs", "-o", "ro,size=1m", "nestor-test-ro", directory])
        try #require(mounted.status == 0, "cannot mount a read-only tmpfs at \(directory): \(mounted.stderr)")
        defer { _ = try? ClusterHarness.runToEnd("/bin/umount", [directory]) }
        let refused = try refusedStart(cluster, dataDirectory: directory)
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr == "cluster-controller: cannot open the store \(directory): the data directory is not writable: Read-only file system\n")
    }
} }
