public import NIOCore

/// The bytes of a stream a request opened, in the chunks they arrived in. Reading a chunk
/// gives its bytes back to the sender as credit (SPEC.md, section 6): a consumer that reads
/// slowly slows the sender down, and at most the stream window is ever buffered.
public struct WireStreamBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    let chunks: AsyncThrowingStream<ByteBuffer, any Error>
    let grant: @Sendable (Int) -> Void

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: chunks.makeAsyncIterator(), grant: grant)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
        let grant: @Sendable (Int) -> Void

        public mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await base.next() else { return nil }
            grant(chunk.readableBytes)
            return chunk
        }
    }
}

/// Writes the bytes of a stream this side opened. `write` waits while the receiver has
/// granted no credit or the connection cannot take more bytes.
public struct WireStreamWriter: Sendable {
    let connection: WireConnection
    let streamID: UInt64
    let chunkSize: Int

    /// Sends `bytes`, cut into chunks no larger than the configured chunk size.
    public func write(_ bytes: ByteBuffer) async throws {
        var bytes = bytes
        while bytes.readableBytes > 0 {
            let chunk = bytes.readSlice(length: min(chunkSize, bytes.readableBytes))!
            try await connection.sendChunk(streamID: streamID, chunk)
        }
    }
}
