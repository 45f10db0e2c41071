public import SeededRandom
/// What one thread of an L2 workload does next.
public enum ChainStep: Equatable, Sendable {
    /// Run guest code (user and kernel) for this many cycles.
    case compute(Cycles)
    /// Issue one 4 KiB block request through the guest's virtio-blk driver and sleep until
    /// it completes.
    case blockIO(write: Bool)
    /// Hand work to a thread on another vCPU with an IPI; with `duty.reply`, sleep until it
    /// answers with an IPI.
    case remote(RemoteDuty)
    /// Sleep until a thread on another vCPU (a lock holder) releases it with an IPI after
    /// `duty.delay`.
    case waitRemote(RemoteDuty)
    /// Write a virtio queue-notify register and go on without waiting (a doorbell).
    case notify
    /// One operation of the workload (an I/O, a transaction) is complete.
    case operationDone
}

/// A workload an L2 VM runs, described by what its threads do (never by costs of the
/// platform: the cost model prices the guest kernel's work and every transition).
public protocol WorkloadModel: Sendable {
    var name: String { get }
    /// What one operation is, for reports ("4 KiB read", "transaction").
    var operationName: String { get }
    /// Threads that issue operations, each with its own vCPU.
    var threads: Int { get }
    /// vCPUs of the L2 VM.
    var vcpus: Int { get }
    /// True when a block request's completion interrupt goes to the vCPU that submitted it;
    /// false when interrupts are spread over all vCPUs (irqbalance).
    var completionOnSubmitter: Bool { get }
    /// The steps of one operation of thread `thread`.
    func operation(thread: Int, rng: inout SplitMix64, costs: PlatformCostModel) -> [ChainStep]
}

/// IOmeter as the whitepaper ran it: 1 worker, 4 KiB transfers, 100 % read, 0 % random
/// (sequential), one outstanding I/O, against a virtual disk the L1 VMM emulates
/// (virtio-blk; QEMU reads its image through L1's page cache).
public struct IOmeterWorkload: WorkloadModel {
    public let name = "iometer"
    public let operationName = "4 KiB sequential read"
    public let threads = 1
    public let vcpus: Int
    public let completionOnSubmitter = true
    /// Dynamo's own work per I/O (issue, completion bookkeeping, statistics) at queue depth
    /// 1: about a microsecond of user-space code, the same on any platform of the period.
    public var dynamoCyclesPerIO: Cycles = 3_000

    public init(vcpus: Int = 4) { self.vcpus = vcpus }

    public func operation(thread: Int, rng: inout SplitMix64, costs: PlatformCostModel) -> [ChainStep] {
        [.compute(rng.jitter(dynamoCyclesPerIO, spread: 0.1)), .blockIO(write: false), .operationDone]
    }
}

/// sysbench 0.4.12 OLTP "complex" (read-write) against MySQL 5.1 InnoDB, 1,000,000 rows,
/// 4 threads on 4 vCPUs, client and server in the same L2 VM.
///
/// One transaction is sysbench's statement mix: BEGIN, 10 point selects, 4 range queries
/// (simple, SUM, ORDER BY, DISTINCT, 100 rows each), an index update, a non-index update, a
/// delete, an insert, COMMIT. Each statement is a client/server round trip. By default the
/// two threads of a connection share a vCPU (CFS places a synchronous wake-up on the
/// waker's CPU when the waker is about to sleep, and QEMU's default topology gives each
/// vCPU its own socket, so no idle sibling draws the wakee away): two context switches, no
/// IPI. `crossVCPUShare` is the share of statements whose server runs on another vCPU
/// instead (an IPI there and one back). The transaction also has:
/// - buffer-pool reads: MySQL 5.1's default 8 MiB buffer pool cannot hold the ~250 MiB
///   table, so pages come from the guest's page cache (pread of 16 KiB, no exit);
/// - lock waits: threads meet on InnoDB's global mutexes, and a waiter is released by the
///   holder on another vCPU with an IPI;
/// - the redo-log write at COMMIT (innodb_flush_log_at_trx_commit=1): a write, then fsync,
///   which wakes ext4's journal thread (jbd2) on another vCPU to write the journal and the
///   commit block, and sleeps until it answers;
/// - timer interrupts and inter-processor interrupts, which the guest kernel model adds.
public struct SysbenchOLTPWorkload: WorkloadModel {
    public let name = "sysbench-oltp"
    public let operationName = "transaction"
    public let threads: Int
    public let vcpus: Int
    public let completionOnSubmitter = false

    /// Server CPU per statement, in microseconds of a 3.2 GHz Haswell core (MySQL 5.1).
    /// Totals about 1.1 ms per transaction; with client work and context switches about
    /// 1.4 ms, i.e. roughly 2,900 transactions/s on 4 cores before I/O and virtualization,
    /// in line with sysbench OLTP results published for MySQL 5.1 on 4-core Xeons.
    public var pointSelectMicros: Double = 35
    public var simpleRangeMicros: Double = 90
    public var sumRangeMicros: Double = 70
    public var orderRangeMicros: Double = 110
    public var distinctRangeMicros: Double = 130
    public var indexUpdateMicros: Double = 80
    public var nonIndexUpdateMicros: Double = 60
    public var deleteMicros: Double = 60
    public var insertMicros: Double = 70
    public var beginMicros: Double = 15
    public var commitMicros: Double = 40
    /// sysbench's client work per statement (libmysqlclient, result handling).
    public var clientMicrosPerStatement: Double = 10
    /// Buffer-pool misses per transaction, each a 16 KiB pread from the page cache.
    public var bufferPoolMissesPerTransaction = 20
    public var bufferPoolMissMicros: Double = 5
    /// Lock waits per transaction at 4 threads, and how long the holder keeps the mutex.
    public var lockWaitsPerTransaction = 2
    public var lockHoldMicros: Double = 5
    /// The journal thread's own work per commit and its writes (journal blocks, commit block).
    public var journalMicros: Double = 10
    public var journalWrites = 2
    /// Share of statements whose client and server threads are on different vCPUs.
    public var crossVCPUShare: Double = 0

    public init(threads: Int = 4, vcpus: Int = 4) {
        self.threads = threads
        self.vcpus = vcpus
    }

    public func operation(thread: Int, rng: inout SplitMix64, costs: PlatformCostModel) -> [ChainStep] {
        func cycles(_ micros: Double) -> Cycles { costs.cycles(seconds: micros * 1e-6) }
        let server: [Double] = [beginMicros] + Array(repeating: pointSelectMicros, count: 10)
            + [simpleRangeMicros, sumRangeMicros, orderRangeMicros, distinctRangeMicros,
               indexUpdateMicros, nonIndexUpdateMicros, deleteMicros, insertMicros]
        var steps: [ChainStep] = []
        let switchCost = costs.c(costs.guestContextSwitch)
        let misses = (0..<bufferPoolMissesPerTransaction).map { _ in rng.below(server.count) }
        let waits = (0..<lockWaitsPerTransaction).map { _ in rng.below(server.count) }
        for (index, micros) in server.enumerated() {
            if crossVCPUShare > 0, rng.unit() < crossVCPUShare {
                steps.append(.compute(rng.jitter(cycles(clientMicrosPerStatement), spread: 0.2)))
                steps.append(.remote(RemoteDuty(compute: rng.jitter(cycles(micros), spread: 0.2), reply: true)))
            } else {
                steps.append(.compute(rng.jitter(cycles(clientMicrosPerStatement), spread: 0.2) + switchCost))
                steps.append(.compute(rng.jitter(cycles(micros), spread: 0.2) + switchCost))
            }
            let missCount = misses.filter { $0 == index }.count
            if missCount > 0 { steps.append(.compute(Cycles(missCount) * cycles(bufferPoolMissMicros))) }
            for _ in 0..<waits.filter({ $0 == index }).count {
                steps.append(.waitRemote(RemoteDuty(delay: cycles(lockHoldMicros), compute: 0, reply: true)))
            }
        }
        // COMMIT: redo log write, then fsync -> journal commit by jbd2 on another vCPU.
        steps.append(.compute(rng.jitter(cycles(commitMicros), spread: 0.2)))
        steps.append(.blockIO(write: true))
        steps.append(.remote(RemoteDuty(compute: cycles(journalMicros), blockWrites: journalWrites, reply: true)))
        steps.append(.compute(rng.jitter(cycles(clientMicrosPerStatement), spread: 0.2) + switchCost))
        steps.append(.operationDone)
        return steps
    }
}

/// A microbenchmark: one L2 thread does a fixed amount of work, then writes a virtio
/// queue-notify register (the smallest exit L1 handles in its kernel, through an
/// ioeventfd), in a loop. Every operation is exactly one reflected exit, so the gain of
/// shadowing depends only on what L1 does per exit; the sweep uses it.
public struct PIOLoopWorkload: WorkloadModel {
    public let name = "pio-loop"
    public let operationName = "notify write"
    public let threads = 1
    public let vcpus: Int
    public let completionOnSubmitter = true
    /// Guest work between two notifications.
    public var workCycles: Cycles = 6_400

    public init(vcpus: Int = 4) { self.vcpus = vcpus }

    public func operation(thread: Int, rng: inout SplitMix64, costs: PlatformCostModel) -> [ChainStep] {
        [.compute(workCycles), .notify, .operationDone]
    }
}

/// No workload: the L2 VM idles (tickless), for tests of the idle path.
public struct IdleWorkload: WorkloadModel {
    public let name = "idle"
    public let operationName = "none"
    public let threads = 0
    public let vcpus: Int
    public let completionOnSubmitter = true

    public init(vcpus: Int = 1) { self.vcpus = vcpus }

    public func operation(thread: Int, rng: inout SplitMix64, costs: PlatformCostModel) -> [ChainStep] { [] }
}

/// The workloads that have names on the command line.
public enum Workloads {
    public static let names = ["iometer", "sysbench-oltp", "pio-loop", "idle"]

    public static func named(_ name: String, vcpus: Int = 4, crossVCPUShare: Double = 0) -> (any WorkloadModel)? {
        switch name {
        case "iometer": return IOmeterWorkload(vcpus: vcpus)
        case "sysbench-oltp":
            var workload = SysbenchOLTPWorkload(threads: min(4, vcpus), vcpus: vcpus)
            workload.crossVCPUShare = crossVCPUShare
            return workload
        case "pio-loop": return PIOLoopWorkload(vcpus: vcpus)
        case "idle": return IdleWorkload(vcpus: vcpus)
        default: return nil
        }
    }
}
