public import NIOCore
import Protos
public import Wire

/// A checksum of a byte stream that does not depend on how the stream is cut into chunks:
/// FNV-1a over the stream's little-endian 64-bit words (the tail zero-padded).
public struct StreamChecksum: Sendable, Equatable {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    public private(set) var count: UInt64 = 0
    private var partial: UInt64 = 0
    private var partialBytes = 0

    public init() {}

    public mutating func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            let total = bytes.count
            while partialBytes != 0, index < total {
                partial |= UInt64(bytes[index]) << (8 * UInt64(partialBytes))
                partialBytes += 1
                index += 1
                if partialBytes == 8 {
                    mix(partial)
                    partial = 0
                    partialBytes = 0
                }
            }
            while index + 8 <= total {
                mix(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                index += 8
            }
            while index < total {
                partial |= UInt64(bytes[index]) << (8 * UInt64(partialBytes))
                partialBytes += 1
                index += 1
            }
        }
        count += UInt64(buffer.readableBytes)
    }

    private mutating func mix(_ word: UInt64) {
        value = (value ^ word) &* 0x0000_0100_0000_01B3
    }

    /// The checksum of everything so far.
    public var final: UInt64 {
        var copy = self
        if copy.partialBytes > 0 { copy.mix(copy.partial) }
        return copy.value ^ count
    }
}

/// The requests `wire-bench` measures: echo, and a bulk upload the server checksums.
public enum BenchService {
    public static func router() -> WireRouter {
        var router = WireRouter()
        router.on(EchoRequest.self) { request, _ in
            EchoResponse(payload: request.payload)
        }
        router.on(BulkUploadRequest.self) { request, incoming in
            guard let body = incoming.body else {
                throw WireFailure(.invalidArgument, "BulkUploadRequest must open a stream")
            }
            var checksum = StreamChecksum()
            for try await chunk in body {
                checksum.update(chunk)
            }
            guard checksum.count == request.totalBytes else {
                throw WireFailure(.invalidArgument, "the stream carried \(checksum.count) bytes, the request announced \(request.totalBytes)",
                                  field: "totalBytes")
            }
            return BulkUploadResponse(receivedBytes: checksum.count, checksum: checksum.final)
        }
        return router
    }
}
