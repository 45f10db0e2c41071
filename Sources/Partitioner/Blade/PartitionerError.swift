import VMX

/// Why the partitioner refused a change. Every case names the conflict; a refused change
/// leaves the blade exactly as it was.
public enum PartitionerError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidBlade(String)
    case invalidSpec(lpar: String, reason: String)
    case duplicateName(String)
    case unknownLPAR(String)
    case coreOutOfRange(lpar: String, core: Int, coreCount: Int)
    case coreInSharedPool(lpar: String, core: Int)
    case coreAlreadyDedicated(lpar: String, core: Int, owner: String)
    case coreListedTwice(lpar: String, core: Int)
    case sharedPoolTooSmall(lpar: String, entitledPercent: Int, poolSize: Int)
    case memoryMisaligned(lpar: String, range: MemoryRange)
    case memoryOutsideBlade(lpar: String, range: MemoryRange, usableFrom: UInt64, usableTo: UInt64)
    case memoryOverlap(lpar: String, range: MemoryRange, owner: String, ownerRange: MemoryRange)
    case unknownDisk(lpar: String, disk: String)
    case diskNotShared(lpar: String, disk: String)
    case diskIsShared(lpar: String, disk: String)
    case diskAlreadyDedicated(lpar: String, disk: String, owner: String)
    case lunRangeInvalid(lpar: String, disk: String, luns: Range<Int>, lunCount: Int)
    case lunOverlap(lpar: String, disk: String, luns: Range<Int>, owner: String, ownerLUNs: Range<Int>)
    case unknownNIC(lpar: String, nic: String)
    case nicAlreadyDedicated(lpar: String, nic: String, owner: String)
    case nestedNotSupported(lpar: String)
    case badTransition(lpar: String, from: LPARState, event: String)
    case notRemovable(lpar: String, state: LPARState)

    public var description: String {
        switch self {
        case .invalidBlade(let reason): return "invalid blade: \(reason)"
        case .invalidSpec(let lpar, let reason): return "LPAR \(lpar): \(reason)"
        case .duplicateName(let name): return "an LPAR named \(name) already exists on this blade"
        case .unknownLPAR(let name): return "no LPAR named \(name) on this blade"
        case .coreOutOfRange(let lpar, let core, let count):
            return "LPAR \(lpar): core \(core) does not exist (the blade has cores 0..<\(count))"
        case .coreInSharedPool(let lpar, let core):
            return "LPAR \(lpar): core \(core) belongs to the shared pool and cannot be dedicated"
        case .coreAlreadyDedicated(let lpar, let core, let owner):
            return "LPAR \(lpar): core \(core) is already dedicated to LPAR \(owner)"
        case .coreListedTwice(let lpar, let core): return "LPAR \(lpar): core \(core) is listed twice"
        case .sharedPoolTooSmall(let lpar, let entitled, let pool):
            return "LPAR \(lpar): the shared LPARs would be entitled to \(entitled)% of a core, more than the shared pool of \(pool) cores (\(pool * 100)%) holds"
        case .memoryMisaligned(let lpar, let range):
            return "LPAR \(lpar): memory \(range) is not aligned to 2 MiB blocks"
        case .memoryOutsideBlade(let lpar, let range, let from, let to):
            return "LPAR \(lpar): memory \(range) lies outside the blade's LPAR memory [\(hex(from)), \(hex(to)))"
        case .memoryOverlap(let lpar, let range, let owner, let ownerRange):
            return "LPAR \(lpar): memory \(range) overlaps LPAR \(owner)'s memory \(ownerRange)"
        case .unknownDisk(let lpar, let disk): return "LPAR \(lpar): the blade has no disk \(disk)"
        case .diskNotShared(let lpar, let disk):
            return "LPAR \(lpar): disk \(disk) is not shared, so it cannot be split into LUN ranges"
        case .diskIsShared(let lpar, let disk):
            return "LPAR \(lpar): disk \(disk) is shared; give the LPAR a LUN range of it"
        case .diskAlreadyDedicated(let lpar, let disk, let owner):
            return "LPAR \(lpar): disk \(disk) is already dedicated to LPAR \(owner)"
        case .lunRangeInvalid(let lpar, let disk, let luns, let count):
            return "LPAR \(lpar): LUNs \(luns.lowerBound)..<\(luns.upperBound) are not within disk \(disk)'s 0..<\(count)"
        case .lunOverlap(let lpar, let disk, let luns, let owner, let ownerLUNs):
            return "LPAR \(lpar): LUNs \(luns.lowerBound)..<\(luns.upperBound) of disk \(disk) overlap LPAR \(owner)'s LUNs \(ownerLUNs.lowerBound)..<\(ownerLUNs.upperBound)"
        case .unknownNIC(let lpar, let nic): return "LPAR \(lpar): the blade has no NIC \(nic)"
        case .nicAlreadyDedicated(let lpar, let nic, let owner):
            return "LPAR \(lpar): NIC \(nic) is already dedicated to LPAR \(owner)"
        case .nestedNotSupported(let lpar):
            return "LPAR \(lpar): vmm requires a nested-capable blade, and this blade is not"
        case .badTransition(let lpar, let from, let event):
            return "LPAR \(lpar): cannot \(event) while \(from.rawValue)"
        case .notRemovable(let lpar, let state):
            return "LPAR \(lpar) is \(state.rawValue); only defined, stopped or failed LPARs can be removed"
        }
    }
}
