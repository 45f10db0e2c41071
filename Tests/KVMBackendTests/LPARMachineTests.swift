#if os(Linux)
import Foundation
import KVM
import KVMBackend
import Testing

/// The committed guest image, or the one `Agents/Guests/build.sh` rebuilt into
/// $NESTOR_GUEST_IMAGES (deploy/test.sh sets it where the toolchain exists).
func guestImage(_ name: String = "lpar-os.bin") -> String {
    if let directory = ProcessInfo.processInfo.environment["NESTOR_GUEST_IMAGES"] { return directory + "/" + name }
    var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path), directory.path != "/" {
        directory.deleteLastPathComponent()
    }
    return directory.path + "/Agents/Guests/images/" + name
}

let kvmAvailability = KVM.availability()

/// A disk image whose bytes are a known function of their offset.
func makeDisk(bytes: Int, seed: UInt8) throws -> String {
    let path = NSTemporaryDirectory() + "nestor-disk-\(UUID().uuidString.prefix(8)).img"
    var data = Data(count: bytes)
    data.withUnsafeMutableBytes { raw in
        let buffer = raw.bindMemory(to: UInt8.self)
        for index in 0..<bytes { buffer[index] = UInt8(truncatingIfNeeded: index &* 31 &+ Int(seed) &+ index >> 9) }
    }
    try data.write(to: URL(fileURLWithPath: path))
    return path
}

func fnv1a(_ path: String, offset: Int, length: Int) throws -> UInt64 {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in data[offset..<(offset + length)] {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return hash
}

@Suite(.enabled(if: kvmAvailability.available, "needs /dev/kvm: \(kvmAvailability.reason)"), .serialized)
struct LPARMachineTests {
    @Test func bootsInLongModeAndWritesToTheConsole() async throws {
        let kvm = try KVM()
        let machine = try LPARMachine(LPARConfiguration(name: "boot", memoryBytes: 64 << 20, hostCores: [0], image: guestImage()), kvm: kvm)
        machine.start()
        defer { machine.stop() }
        // The guest says it is ready after it has written its line.
        #expect(await machine.wait(timeout: 30) { $0.guestState == .ready })
        #expect(machine.console.first == "nestor lpar-os: long mode up, memory 64 MiB, disk 0 sectors, 1 vCPUs")
        #expect(machine.state == .running)
    }

    @Test func anLPAROfManyGigabytesBootsWithItsMailboxIntact() async throws {
        // Six page directories: they must not reach the mailbox (the memory is a sparse memfd).
        let kvm = try KVM()
        let machine = try LPARMachine(LPARConfiguration(name: "large", memoryBytes: 6 << 30, hostCores: [0], image: guestImage()), kvm: kvm)
        machine.start()
        defer { machine.stop() }
        #expect(await machine.wait(timeout: 30) { $0.guestState == .ready })
        #expect(machine.console.first == "nestor lpar-os: long mode up, memory 6144 MiB, disk 0 sectors, 1 vCPUs")
        machine.post(.workload, argument: GuestABI.Workload.compute.rawValue)
        #expect(await machine.wait(timeout: 10) { $0.load(.operations) > 10 })
        #expect(machine.state == .running)
    }

    @Test func everyDedicatedCoreRunsAVCPUOnItsOwnThread() async throws {
        let kvm = try KVM()
        let machine = try LPARMachine(LPARConfiguration(name: "smp", memoryBytes: 32 << 20, hostCores: [0, 1], image: guestImage()), kvm: kvm)
        #expect(machine.lpar.vcpuCount == 2)
        machine.start()
        defer { machine.stop() }
        #expect(await machine.wait(timeout: 30) { $0.guestState == .ready })
        #expect(machine.console.first == "nestor lpar-os: long mode up, memory 32 MiB, disk 0 sectors, 2 vCPUs")
        #expect(machine.pinnedCores == [0: 0, 1: 1])
        machine.post(.workload, argument: GuestABI.Workload.compute.rawValue)
        // Both vCPUs do compute rounds, vCPU 1 from the entry point for the others.
        #expect(await machine.wait(timeout: 10) { $0.cpuOperations(0) > 20 && $0.cpuOperations(1) > 20 })
        machine.post(.workload, argument: GuestABI.Workload.idle.rawValue)
        #expect(await machine.wait(timeout: 10) { $0.commandTaken })
    }

    @Test func diskReadReportsTheChecksumOfItsDisk() async throws {
        let disk = try makeDisk(bytes: 1 << 20, seed: 7)
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let kvm = try KVM()
        let machine = try LPARMachine(LPARConfiguration(name: "reader", memoryBytes: 64 << 20, hostCores: [0], image: guestImage(),
                                                        disk: .init(path: disk)), kvm: kvm)
        machine.start()
        defer { machine.stop() }
        #expect(await machine.wait(timeout: 10) { $0.guestState == .ready })
        machine.post(.workload, argument: GuestABI.Workload.diskRead.rawValue)
        #expect(await machine.wait(timeout: 30) { $0.load(.passes) >= 1 })
        #expect(machine.load(.checksum) == (try fnv1a(disk, offset: 0, length: 1 << 20)))
        #expect(machine.load(.errors) == 0)
    }

    /// What this process's open file descriptors point at (memfds read "/memfd:NAME (deleted)").
    func openFiles() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return entries.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0) }
    }

    @Test func twoLPARsSeeOnlyTheirOwnDiskRangeAndMemory() async throws {
        // One shared image; each LPAR sees its own 512 KiB range of it.
        let disk = try makeDisk(bytes: 1 << 20, seed: 3)
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let kvm = try KVM()
        let a = try LPARMachine(LPARConfiguration(name: "a", memoryBytes: 32 << 20, hostCores: [0], image: guestImage(),
                                                  disk: .init(path: disk, offset: 0, length: 512 << 10)), kvm: kvm)
        let b = try LPARMachine(LPARConfiguration(name: "b", memoryBytes: 32 << 20, hostCores: [1], image: guestImage(),
                                                  disk: .init(path: disk, offset: 512 << 10, length: 512 << 10)), kvm: kvm)
        a.start()
        b.start()
        defer { a.stop(); b.stop() }
        for machine in [a, b] {
            #expect(await machine.wait(timeout: 10) { $0.guestState == .ready })
            machine.post(.workload, argument: GuestABI.Workload.diskRead.rawValue)
        }
        #expect(await a.wait(timeout: 30) { $0.load(.passes) >= 1 })
        #expect(await b.wait(timeout: 30) { $0.load(.passes) >= 1 })
        #expect(a.load(.checksum) == (try fnv1a(disk, offset: 0, length: 512 << 10)))
        #expect(b.load(.checksum) == (try fnv1a(disk, offset: 512 << 10, length: 512 << 10)))
        // Reading past its range is an error to the guest, never the other LPAR's data.
        a.post(.readLBA, argument: (512 << 10) / 512)
        #expect(await a.wait(timeout: 10) { $0.commandTaken && $0.load(.probeStatus) == UInt64(GuestABI.BlockStatus.outOfRange.rawValue) })
        // A read outside its memory is a wild access: that LPAR fails, the other runs on.
        let before = b.load(.operations)
        a.post(.peek, argument: 64 << 20)
        #expect(await a.wait(timeout: 10) { if case .failed = $0.state { return true }; return false })
        guard case .failed(let reason) = a.state else { return }
        #expect(reason.hasPrefix("wild MMIO read of 1 bytes at 0x4000000"))
        #expect(await b.wait(timeout: 10) { $0.load(.operations) > before + 10 })
        #expect(b.state == .running)
    }

    @Test func aTripleFaultFailsOnlyItsLPAR() async throws {
        let kvm = try KVM()
        let victim = try LPARMachine(LPARConfiguration(name: "victim", memoryBytes: 16 << 20, hostCores: [0], image: guestImage()), kvm: kvm)
        let bystander = try LPARMachine(LPARConfiguration(name: "bystander", memoryBytes: 16 << 20, hostCores: [1], image: guestImage()), kvm: kvm)
        victim.start()
        bystander.start()
        defer { victim.stop(); bystander.stop() }
        #expect(await victim.wait(timeout: 10) { $0.guestState == .ready })
        #expect(await bystander.wait(timeout: 10) { $0.guestState == .ready })
        bystander.post(.workload, argument: GuestABI.Workload.compute.rawValue)
        victim.post(.crash)
        #expect(await victim.wait(timeout: 10) { $0.state == .failed("triple fault (KVM shutdown exit)") })
        let before = bystander.load(.operations)
        #expect(await bystander.wait(timeout: 10) { $0.load(.operations) > before + 100 })
        #expect(victim.console.last == "crashing on command")
    }

    @Test func badInputIsRefusedBeforeAnythingIsCreated() async throws {
        let kvm = try KVM()
        let big = NSTemporaryDirectory() + "nestor-big-\(UUID().uuidString.prefix(8)).bin"
        try Data(count: 2 << 20).write(to: URL(fileURLWithPath: big))
        defer { try? FileManager.default.removeItem(atPath: big) }
        let small = try makeDisk(bytes: 1 << 20, seed: 1)
        defer { try? FileManager.default.removeItem(atPath: small) }
        let cases: [(LPARConfiguration, String)] = [
            (LPARConfiguration(name: "big", memoryBytes: 64 << 20, hostCores: [0], image: big),
             "LPAR big: the guest image is 2097152 bytes; at most 1048576 fit at 100000 in the LPAR's memory"),
            (LPARConfiguration(name: "nodisk", memoryBytes: 64 << 20, hostCores: [0], image: guestImage(), disk: .init(path: "/nonexistent/disk.img")),
             "LPAR nodisk: the disk image /nonexistent/disk.img cannot be opened: No such file or directory"),
            (LPARConfiguration(name: "tiny", memoryBytes: 4 << 20, hostCores: [0], image: guestImage()),
             "LPAR tiny: memory 4 MiB is below the 8 MiB an LPAR needs"),
            (LPARConfiguration(name: "noimage", memoryBytes: 64 << 20, hostCores: [0], image: "/nonexistent.bin"),
             "LPAR noimage: the guest image /nonexistent.bin cannot be read"),
            (LPARConfiguration(name: "past", memoryBytes: 64 << 20, hostCores: [0], image: guestImage(),
                               disk: .init(path: small, offset: 2 << 20, length: 4096)),
             "LPAR past: the disk range 2097152+4096 is not whole sectors inside \(small) (1048576 bytes)"),
        ]
        for (configuration, message) in cases {
            let error = #expect(throws: LPARError.self) { try LPARMachine(configuration, kvm: kvm) }
            #expect(error?.description == message)
        }
        // Nothing of theirs is left open: no memfd, no disk, no image.
        let leftovers = openFiles().filter { path in
            ["nestor-lpar-big", "nestor-lpar-nodisk", "nestor-lpar-tiny", "nestor-lpar-noimage", "nestor-lpar-past", big, small]
                .contains { path.contains($0) }
        }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}
#endif
