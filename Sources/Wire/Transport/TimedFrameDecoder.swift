import NIOCore
import WireCodec

/// When the frame that has started arriving began: shared by the decoder, which sees the
/// bytes, and the connection handler, which enforces the frame timeout. Confined to the
/// channel's event loop.
final class FrameClock {
    /// Set when bytes of an unfinished preamble or frame are buffered; nil between frames.
    var partialSince: NIODeadline?
}

/// The frame decoder as the pipeline runs it: a `FrameDecoder` that also tells the clock
/// whether a frame is half-received.
struct TimedFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = FrameDecoder.Inbound

    private var decoder: FrameDecoder
    private let clock: FrameClock

    init(maxFrameSize: UInt32, clock: FrameClock) {
        self.decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        self.clock = clock
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let item = try decoder.next(from: &buffer) else {
            if buffer.readableBytes > 0 || decoder.isMidFrame {
                if clock.partialSince == nil { clock.partialSince = .now() }
            } else {
                clock.partialSince = nil
            }
            return .needMoreData
        }
        clock.partialSince = nil
        context.fireChannelRead(wrapInboundOut(item))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}
