/// Why a guest-physical access failed.
public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    case outOfRange(address: UInt64, count: Int, size: UInt64)

    public var description: String {
        switch self {
        case .outOfRange(let address, let count, let size):
            return "guest-physical access of \(count) bytes at \(address) is outside memory of \(size) bytes"
        }
    }
}

/// The guest-physical memory of an LPAR as L0 sees it.
public protocol GuestMemory: AnyObject {
    /// Bytes of guest-physical memory, from address 0.
    var size: UInt64 { get }
    func read(_ address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8]
    func write(_ address: UInt64, _ bytes: [UInt8]) throws(GuestMemoryError)
}

extension GuestMemory {
    public func read32(_ address: UInt64) throws(GuestMemoryError) -> UInt32 {
        let bytes = try read(address, count: 4)
        return bytes.enumerated().reduce(0) { $0 | (UInt32($1.element) << UInt32($1.offset * 8)) }
    }

    public func read64(_ address: UInt64) throws(GuestMemoryError) -> UInt64 {
        let bytes = try read(address, count: 8)
        return bytes.enumerated().reduce(0) { $0 | (UInt64($1.element) << UInt64($1.offset * 8)) }
    }

    public func write32(_ address: UInt64, _ value: UInt32) throws(GuestMemoryError) {
        try write(address, (0..<4).map { UInt8(truncatingIfNeeded: value >> UInt32($0 * 8)) })
    }

    public func write64(_ address: UInt64, _ value: UInt64) throws(GuestMemoryError) {
        try write(address, (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64($0 * 8)) })
    }

    func checkRange(_ address: UInt64, _ count: Int) throws(GuestMemoryError) {
        let (end, overflow) = address.addingReportingOverflow(UInt64(count))
        if overflow || end > size { throw .outOfRange(address: address, count: count, size: size) }
    }
}

/// Guest memory that stores only the 4 KiB pages that were written; unwritten bytes read 0.
///
/// The simulated backend and the tests use it to give an LPAR gigabytes of address space
/// while holding only the pages its guest hypervisor touches (VMCS regions, EPT tables).
public final class SparseGuestMemory: GuestMemory {
    public let size: UInt64
    private var pages: [UInt64: [UInt8]] = [:]
    private static let pageSize: UInt64 = 4096

    public init(size: UInt64) { self.size = size }

    /// How many pages hold data.
    public var residentPages: Int { pages.count }

    public func read(_ address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        try checkRange(address, count)
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let gpa = address + UInt64(offset)
            let page = gpa / Self.pageSize
            let inPage = Int(gpa % Self.pageSize)
            let chunk = min(count - offset, Int(Self.pageSize) - inPage)
            if let data = pages[page] {
                for i in 0..<chunk { out[offset + i] = data[inPage + i] }
            }
            offset += chunk
        }
        return out
    }

    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(GuestMemoryError) {
        try checkRange(address, bytes.count)
        var offset = 0
        while offset < bytes.count {
            let gpa = address + UInt64(offset)
            let page = gpa / Self.pageSize
            let inPage = Int(gpa % Self.pageSize)
            let chunk = min(bytes.count - offset, Int(Self.pageSize) - inPage)
            var data = pages[page] ?? [UInt8](repeating: 0, count: Int(Self.pageSize))
            for i in 0..<chunk { data[inPage + i] = bytes[offset + i] }
            pages[page] = data
            offset += chunk
        }
    }
}
