import Logging
import NIOCore
import NIOSSL
import NIOTLS
import Protos
import WireCodec

/// Which end of the TCP connection this is (SPEC.md, section 1).
enum ConnectionSide: Sendable {
    case client, server

    var firstRequestID: UInt64 { self == .client ? 1 : 2 }
    /// The parity of the ids the other side's requests carry.
    var peerIDParity: UInt64 { self == .client ? 0 : 1 }
}

/// Identifies one call so that a cancellation can find it, whichever reaches the loop first.
final class CallToken: @unchecked Sendable {
    // Only touched on the connection's event loop.
    var id: UInt64?
    var cancelled = false
}

/// The protocol engine of one connection, on its event loop: identity, preambles, requests
/// and their ids, timeouts, events, streams and their credit, pings, limits and GOAWAY.
final class WireConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = FrameDecoder.Inbound
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The credit a stream starts with (SPEC.md, section 6).
    static let initialStreamCredit: UInt64 = 1 << 20

    /// `draining`: after a connection-level error, GOAWAY is sent and nothing more is read;
    /// the requests already accepted are answered, then the connection closes.
    enum Phase { case handshaking, awaitingPreamble, open, draining, closed }

    struct PendingCall {
        var promise: EventLoopPromise<Frame>
        var timeout: Scheduled<Void>?
    }

    struct InboundStream {
        var continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
        /// Bytes the sender may still send.
        var credit: UInt64
        /// Bytes consumed and not yet given back.
        var ungranted: UInt64 = 0
    }

    struct OutboundStream {
        var credit: UInt64 = WireConnectionHandler.initialStreamCredit
        var waiting: [(chunk: ByteBuffer, promise: EventLoopPromise<Void>)] = []
    }

    let side: ConnectionSide
    let configuration: WireConfiguration
    let policy: RolePolicy
    let service: (any WireService)?
    let clock: FrameClock
    let identity: HandshakeIdentity
    var logger: Logger
    let ready: EventLoopPromise<WireConnection>
    let events: AsyncStream<WireEvent>
    private let eventSink: AsyncStream<WireEvent>.Continuation

    private(set) var phase = Phase.handshaking
    private var context: ChannelHandlerContext?
    private(set) var connection: WireConnection?
    private(set) var peer: PeerIdentity?
    private var peerMaxFrame: UInt32 = WireLimits.standard.maxFrameSize
    private var nextRequestID: UInt64
    private var lastPeerRequestID: UInt64 = 0
    private var pending: [UInt64: PendingCall] = [:]
    private var handlers: [UInt64: Task<Void, Never>] = [:]
    private var inboundStreams: [UInt64: InboundStream] = [:]
    private var outboundStreams: [UInt64: OutboundStream] = [:]
    private var goawaySent = false
    private var goawayReceived: (lastID: UInt64, code: WireErrorCode, reason: String)?
    private var closeReason: String?
    private var drained: [EventLoopPromise<Void>] = []
    private var startedAt = NIODeadline.now()
    private var lastReadAt = NIODeadline.now()
    private var keepalive: (value: UInt64, sentAt: NIODeadline)?
    private var pings: [UInt64: EventLoopPromise<Void>] = [:]
    private var nextPingValue: UInt64 = 1
    private var pingWindow: (start: NIODeadline, count: Int) = (.now(), 0)
    private var timer: RepeatedTask?
    private var reading = false
    private var needsFlush = false
    private var tornDown = false

    init(side: ConnectionSide, configuration: WireConfiguration, policy: RolePolicy, service: (any WireService)?,
         clock: FrameClock, identity: HandshakeIdentity, logger: Logger, ready: EventLoopPromise<WireConnection>) {
        self.side = side
        self.configuration = configuration
        self.policy = policy
        self.service = service
        self.clock = clock
        self.identity = identity
        self.logger = logger
        self.ready = ready
        self.nextRequestID = side.firstRequestID
        (events, eventSink) = AsyncStream.makeStream(of: WireEvent.self, bufferingPolicy: .bufferingOldest(configuration.eventBuffer))
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let remote = context.channel.remoteAddress { logger[metadataKey: "remote"] = "\(remote)" }
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        startedAt = .now()
        lastReadAt = startedAt
        let shortest = min(configuration.frameTimeout, configuration.preambleTimeout, configuration.idleTimeout, configuration.pingTimeout)
        let tick = max(TimeAmount.milliseconds(10), .nanoseconds(shortest.nanoseconds / 4))
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in bound.value.onTick() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshakeCompleted()
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func handshakeCompleted() {
        guard phase == .handshaking else { return }
        guard let peer = identity.peer else {
            // The verifier accepted the chain, so this is a verifier without an identity: refuse.
            fail(.permissionDenied, "the peer's certificate carries no Nestor identity", log: .error)
            return
        }
        self.peer = peer
        logger[metadataKey: "peer"] = "\(peer)"
        phase = .awaitingPreamble
        if side == .client { sendPreamble() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        lastReadAt = .now()
        keepalive = nil
        switch unwrapInboundIn(data) {
        case .preamble(let preamble): received(preamble)
        case .frame(let frame): if phase == .open { received(frame) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        // A peer that does not read what it asked for stops being read from (the client
        // always reads, so two peers cannot wait on each other).
        if side == .server { context.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in } }
        if writable { pumpStreams() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let error as WireError:
            if phase == .draining || phase == .closed { return }
            if phase != .open {
                // A bad preamble: the other side does not speak this protocol.
                closeReason = "bad preamble: \(error)"
                logger.warning("closing: bad preamble: \(error)")
                close()
            } else {
                fail(error.code == .frameTooLarge ? .frameTooLarge : .protocolViolation, "\(error)", log: .warning)
            }
        case is ByteToMessageDecoderError.PayloadTooLargeError:
            fail(.frameTooLarge, "more than \(configuration.limits.maxFrameSize) bytes buffered for one frame", log: .warning)
        case is NIOSSLError, is BoringSSLError:
            let reason = identity.refusal.map { "\($0)" } ?? Self.describe(error, side: side)
            // In TLS 1.3 a client finishes its side of the handshake before the server has
            // checked the client's certificate: a refusal arrives while awaiting the preamble.
            let connecting = phase == .handshaking || phase == .awaitingPreamble
            closeReason = connecting ? reason : "TLS error: \(reason)"
            if connecting {
                logger.warning("refused connection: TLS handshake failed: \(reason)")
            } else {
                logger.debug("TLS error: \(error)")
            }
            close()
        default:
            if closeReason == nil { closeReason = "\(error)" }
            logger.debug("connection error: \(error)")
            close()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        teardown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        teardown()
        self.context = nil
    }

    // MARK: - Inbound

    private func received(_ preamble: Preamble) {
        if phase == .handshaking { handshakeCompleted() }
        guard phase == .awaitingPreamble else { return }
        guard preamble.major == Preamble.currentMajor else {
            let reason = "protocol version \(preamble.major).\(preamble.minor) is not supported; this peer speaks \(Preamble.currentMajor).\(Preamble.currentMinor)"
            if side == .server { sendPreamble() }
            phase = .open
            fail(.unsupportedVersion, reason, log: .warning)
            return
        }
        peerMaxFrame = preamble.maxFrameSize
        if side == .server { sendPreamble() }
        phase = .open
        guard let context, let peer else { return }
        let connection = WireConnection(channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop),
                                        peer: peer, side: side, configuration: configuration, events: events)
        self.connection = connection
        logger.debug("connection open (peer speaks \(preamble.major).\(preamble.minor), accepts frames up to \(preamble.maxFrameSize) bytes)")
        ready.succeed(connection)
    }

    private func received(_ frame: Frame) {
        switch frame.kind {
        case .request: receivedRequest(frame)
        case .response, .error: receivedAnswer(frame)
        case .event: receivedEvent(frame)
        case .streamChunk: receivedChunk(frame)
        case .streamEnd: receivedStreamEnd(frame)
        case .ping: receivedPing(frame)
        case .pong: receivedPong(frame)
        case .goaway: receivedGoaway(frame)
        case .windowUpdate: receivedWindowUpdate(frame)
        case .cancel: receivedCancel(frame)
        }
    }

    private func receivedRequest(_ frame: Frame) {
        let id = frame.id
        guard id % 2 == side.peerIDParity, id > lastPeerRequestID else {
            fail(.protocolViolation, "request id \(id) is not a new \(side.peerIDParity == 1 ? "odd" : "even") id above \(lastPeerRequestID)", log: .warning)
            return
        }
        lastPeerRequestID = id
        let opensStream = frame.header.flags & FrameHeader.opensStream != 0
        if opensStream { inboundStreams[id] = InboundStream(continuation: nil, credit: Self.initialStreamCredit) }
        guard let peer, !goawaySent else {
            refuse(id, .shuttingDown, "this peer is shutting down")
            return
        }
        let type = frame.messageType
        switch policy.decide(type, from: peer.role) {
        case .allowed:
            break
        case .unknownType:
            refuse(id, .unknownMessageType, "unknown message type \(type)")
            return
        case .notARequest:
            let name = policy.entry(type)?.name ?? "\(type)"
            refuse(id, .protocolViolation, "\(name) (type \(type)) is not a request")
            return
        case .denied(let allowed):
            let name = policy.entry(type)?.name ?? "\(type)"
            let roles = allowed.map(\.rawValue).sorted().joined(separator: ", ")
            logger.warning("permission denied: \(peer) (role \(peer.role.rawValue)) may not send \(name) (type \(type)); allowed roles: \(roles.isEmpty ? "none" : roles)")
            refuse(id, .permissionDenied, "role \(peer.role.rawValue) may not send \(name); allowed: \(roles.isEmpty ? "none" : roles)")
            service?.refusedByRole(peer, messageType: type, name: name)
            return
        }
        guard handlers.count < configuration.maxInFlight else {
            refuse(id, .tooManyRequests, "more than \(configuration.maxInFlight) requests in flight")
            return
        }
        let message: any WireStruct
        do {
            message = try NestorCatalog.decode(type: type, payload: frame.payload, limits: configuration.limits)
        } catch {
            logger.debug("malformed request \(id) of type \(type): \(error)")
            refuse(id, error.code, "\(error)")
            return
        }
        guard let service, let connection else {
            refuse(id, .unavailable, "this peer serves no requests")
            return
        }
        var body: WireStreamBody?
        if opensStream {
            let (chunks, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
            inboundStreams[id]?.continuation = continuation
            let bound = NIOLoopBound(self, eventLoop: connection.channel.eventLoop)
            let loop = connection.channel.eventLoop
            body = WireStreamBody(chunks: chunks) { bytes in
                loop.execute { bound.value.consumed(UInt64(bytes), stream: id) }
            }
            let extra = configuration.streamWindow > Self.initialStreamCredit ? configuration.streamWindow - Self.initialStreamCredit : 0
            if extra > 0 {
                inboundStreams[id]?.credit += extra
                write(.windowUpdate, type: WindowUpdate.messageType, id: id, payload: WindowUpdate(credit: extra).encoded())
            }
        }
        let request = WireRequest(id: id, messageType: type, peer: peer, message: message, body: body, connection: connection)
        let bound = NIOLoopBound(self, eventLoop: connection.channel.eventLoop)
        let loop = connection.channel.eventLoop
        let logger = self.logger
        handlers[id] = Task {
            let outcome: Result<WireReply, WireFailure>
            do {
                outcome = .success(try await service.handle(request))
            } catch let failure as WireFailure {
                outcome = .failure(failure)
            } catch let error as WireError {
                outcome = .failure(WireFailure(error.code, "\(error)"))
            } catch is CancellationError {
                outcome = .failure(WireFailure(.cancelled, "the request was cancelled"))
            } catch {
                logger.error("handler for request \(id) (type \(type)) failed: \(error)")
                outcome = .failure(WireFailure(.internalError, "\(error)"))
            }
            loop.execute { bound.value.answered(id, outcome) }
        }
    }

    /// A handler finished: answer its request.
    private func answered(_ id: UInt64, _ outcome: Result<WireReply, WireFailure>) {
        guard handlers.removeValue(forKey: id) != nil else { return }
        if let stream = inboundStreams.removeValue(forKey: id) {
            stream.continuation?.finish(throwing: WireFailure(.cancelled, "the request was answered"))
            // Chunks still on their way for this stream are dropped on arrival.
            inboundStreams[id] = InboundStream(continuation: nil, credit: stream.credit)
        }
        switch outcome {
        case .success(let reply):
            if reply.payload.readableBytes > Int(peerMaxFrame) {
                logger.error("response to request \(id) is \(reply.payload.readableBytes) bytes, over the peer's limit of \(peerMaxFrame)")
                write(.error, type: ErrorInfo.messageType, id: id,
                      payload: ErrorInfo(code: WireErrorCode.internalError.rawValue, message: "the response exceeds the frame limit").encoded())
            } else {
                write(.response, type: reply.messageType, id: id, payload: reply.payload)
            }
        case .failure(let failure):
            write(.error, type: ErrorInfo.messageType, id: id,
                  payload: ErrorInfo(code: failure.code.rawValue, message: failure.message, field: failure.field).encoded())
        }
        checkDrained()
    }

    private func refuse(_ id: UInt64, _ code: WireErrorCode, _ message: String) {
        write(.error, type: ErrorInfo.messageType, id: id, payload: ErrorInfo(code: code.rawValue, message: message).encoded())
    }

    private func receivedAnswer(_ frame: Frame) {
        if frame.id == 0, frame.kind == .error {
            let info = try? frame.decode(ErrorInfo.self, limits: configuration.limits)
            logger.warning("peer reported a connection error: \(info.map { "\($0.message) (code \($0.code))" } ?? "undecodable")")
            return
        }
        guard let call = pending.removeValue(forKey: frame.id) else {
            logger.debug("dropping an answer to request \(frame.id), which is no longer waited for")
            return
        }
        call.timeout?.cancel()
        if let stream = outboundStreams.removeValue(forKey: frame.id) {
            // Answered before the stream ended: stop, and end it so the receiver can forget it.
            let failure = WireConnectionError.closed("the receiver answered the stream before it ended")
            for waiter in stream.waiting { waiter.promise.fail(failure) }
            write(.streamEnd, type: 0, id: frame.id, payload: ByteBuffer())
        }
        call.promise.succeed(frame)
        checkDrained()
    }

    private func receivedEvent(_ frame: Frame) {
        guard let peer else { return }
        guard case .allowed = policy.decide(frame.messageType, from: peer.role, kind: .event) else {
            logger.warning("dropping event of type \(frame.messageType): \(peer) may not send it")
            return
        }
        do {
            let message = try NestorCatalog.decode(type: frame.messageType, payload: frame.payload, limits: configuration.limits)
            if case .dropped = eventSink.yield(WireEvent(messageType: frame.messageType, message: message, peer: peer)) {
                logger.warning("event buffer full (\(configuration.eventBuffer) events): dropped an event of type \(frame.messageType)")
            }
        } catch {
            logger.warning("dropping malformed event of type \(frame.messageType): \(error)")
        }
    }

    private func receivedChunk(_ frame: Frame) {
        let id = frame.id
        guard var stream = inboundStreams[id] else {
            fail(.protocolViolation, "a chunk for stream \(id), which is not open", log: .warning)
            return
        }
        let length = UInt64(frame.payload.readableBytes)
        guard length <= stream.credit else {
            fail(.protocolViolation, "stream \(id) sent \(length) bytes with \(stream.credit) bytes of credit", log: .warning)
            return
        }
        stream.credit -= length
        inboundStreams[id] = stream
        if let continuation = stream.continuation {
            continuation.yield(frame.payload)
        }
    }

    private func receivedStreamEnd(_ frame: Frame) {
        guard let stream = inboundStreams.removeValue(forKey: frame.id) else {
            fail(.protocolViolation, "end of stream \(frame.id), which is not open", log: .warning)
            return
        }
        stream.continuation?.finish()
    }

    /// The consumer read `bytes` of stream `id`: give them back as credit in batches.
    private func consumed(_ bytes: UInt64, stream id: UInt64) {
        guard var stream = inboundStreams[id], stream.continuation != nil else { return }
        stream.ungranted += bytes
        let batch = min(UInt64(configuration.chunkSize), configuration.streamWindow / 4)
        if stream.ungranted >= batch {
            let credit = stream.ungranted
            stream.credit += credit
            stream.ungranted = 0
            write(.windowUpdate, type: WindowUpdate.messageType, id: id, payload: WindowUpdate(credit: credit).encoded())
        }
        inboundStreams[id] = stream
    }

    private func receivedPing(_ frame: Frame) {
        let now = NIODeadline.now()
        if now - pingWindow.start > .seconds(1) { pingWindow = (now, 0) }
        pingWindow.count += 1
        guard pingWindow.count <= configuration.maxPingsPerSecond else {
            fail(.tooManyPings, "more than \(configuration.maxPingsPerSecond) pings in one second", log: .warning)
            return
        }
        guard let data = try? frame.decode(PingData.self, limits: configuration.limits) else {
            fail(.protocolViolation, "a PING without PingData", log: .warning)
            return
        }
        write(.pong, type: PingData.messageType, id: 0, payload: data.encoded())
    }

    private func receivedPong(_ frame: Frame) {
        guard let data = try? frame.decode(PingData.self, limits: configuration.limits) else { return }
        pings.removeValue(forKey: data.opaque)?.succeed(())
    }

    private func receivedGoaway(_ frame: Frame) {
        guard let goaway = try? frame.decode(GoAway.self, limits: configuration.limits) else {
            fail(.protocolViolation, "a GOAWAY without GoAway", log: .warning)
            return
        }
        let code = WireErrorCode(rawValue: goaway.code) ?? .protocolViolation
        goawayReceived = (goaway.lastRequestID, code, goaway.reason)
        closeReason = "peer went away (\(code)): \(goaway.reason)"
        if code == .shuttingDown {
            logger.info("peer is shutting down: \(goaway.reason)")
        } else {
            logger.warning("peer closed the connection with \(code): \(goaway.reason)")
        }
        for id in pending.keys where id > goaway.lastRequestID {
            failCall(id, WireConnectionError.goaway(code: code, reason: goaway.reason))
        }
        checkDrained()
        if pending.isEmpty, handlers.isEmpty { close() }
    }

    private func receivedWindowUpdate(_ frame: Frame) {
        guard let update = try? frame.decode(WindowUpdate.self, limits: configuration.limits) else {
            fail(.protocolViolation, "a WINDOW_UPDATE without WindowUpdate", log: .warning)
            return
        }
        guard outboundStreams[frame.id] != nil else { return }
        let (sum, overflow) = outboundStreams[frame.id]!.credit.addingReportingOverflow(update.credit)
        guard !overflow else {
            fail(.protocolViolation, "stream \(frame.id) credit overflows", log: .warning)
            return
        }
        outboundStreams[frame.id]!.credit = sum
        pumpStreams()
    }

    /// The peer gave up on a request (and on its stream, if it opened one: no chunk follows).
    private func receivedCancel(_ frame: Frame) {
        handlers[frame.id]?.cancel()
        inboundStreams.removeValue(forKey: frame.id)?.continuation?.finish(throwing: CancellationError())
    }

    // MARK: - Outbound, from the connection's API (on the loop)

    func startCall(type: MessageType, payload: ByteBuffer, opensStream: Bool, timeout: TimeAmount,
                   token: CallToken) -> EventLoopFuture<(UInt64, EventLoopFuture<Frame>)> {
        guard let context else { return failed(WireConnectionError.closed(closeReason ?? "the connection is closed")) }
        if token.cancelled { return failed(CancellationError()) }
        if let goaway = goawayReceived { return failed(WireConnectionError.goaway(code: goaway.code, reason: goaway.reason)) }
        guard phase == .open, !goawaySent else { return failed(WireConnectionError.closed(closeReason ?? "the connection is closing")) }
        guard payload.readableBytes <= Int(peerMaxFrame) else {
            return failed(WireError.frameTooLarge(length: UInt32(clamping: payload.readableBytes), maximum: peerMaxFrame))
        }
        guard pending.count < configuration.maxInFlight else {
            return failed(WireFailure(.tooManyRequests, "more than \(configuration.maxInFlight) calls in flight on this connection"))
        }
        let id = nextRequestID
        nextRequestID += 2
        token.id = id
        let promise = context.eventLoop.makePromise(of: Frame.self)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let scheduled = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.timedOut(id, after: timeout)
        }
        pending[id] = PendingCall(promise: promise, timeout: scheduled)
        if opensStream { outboundStreams[id] = OutboundStream() }
        write(.request, flags: opensStream ? FrameHeader.opensStream : 0, type: type, id: id, payload: payload)
        return context.eventLoop.makeSucceededFuture((id, promise.futureResult))
    }

    private func timedOut(_ id: UInt64, after timeout: TimeAmount) {
        guard pending[id] != nil else { return }
        write(.cancel, type: 0, id: id, payload: ByteBuffer())
        failCall(id, WireConnectionError.timeout(timeout))
    }

    func cancelCall(_ token: CallToken) {
        token.cancelled = true
        guard let id = token.id, pending[id] != nil else { return }
        write(.cancel, type: 0, id: id, payload: ByteBuffer())
        failCall(id, CancellationError())
    }

    private func failCall(_ id: UInt64, _ error: any Error) {
        guard let call = pending.removeValue(forKey: id) else { return }
        call.timeout?.cancel()
        if let stream = outboundStreams.removeValue(forKey: id) {
            for waiter in stream.waiting { waiter.promise.fail(error) }
        }
        call.promise.fail(error)
        checkDrained()
    }

    func sendChunk(streamID id: UInt64, _ chunk: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context else { return failed(WireConnectionError.closed(closeReason ?? "the connection is closed")) }
        guard outboundStreams[id] != nil else {
            return failed(WireConnectionError.closed("stream \(id) is no longer open"))
        }
        guard chunk.readableBytes <= Int(peerMaxFrame) else {
            return failed(WireError.frameTooLarge(length: UInt32(clamping: chunk.readableBytes), maximum: peerMaxFrame))
        }
        let promise = context.eventLoop.makePromise(of: Void.self)
        outboundStreams[id]!.waiting.append((chunk, promise))
        pumpStreams()
        return promise.futureResult
    }

    func endStream(_ id: UInt64, abort: Bool) {
        guard outboundStreams.removeValue(forKey: id) != nil else { return }
        write(abort ? .cancel : .streamEnd, type: 0, id: id, payload: ByteBuffer())
    }

    /// Sends the chunks that have credit, while the connection can take them.
    private func pumpStreams() {
        guard let context else { return }
        for id in outboundStreams.keys.sorted() {
            while context.channel.isWritable, let first = outboundStreams[id]?.waiting.first,
                  UInt64(first.chunk.readableBytes) <= outboundStreams[id]!.credit {
                outboundStreams[id]!.waiting.removeFirst()
                outboundStreams[id]!.credit -= UInt64(first.chunk.readableBytes)
                write(.streamChunk, type: 0, id: id, payload: first.chunk)
                first.promise.succeed(())
            }
        }
    }

    func sendEvent(type: MessageType, payload: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context, phase == .open else { return failed(WireConnectionError.closed(closeReason ?? "the connection is closed")) }
        guard payload.readableBytes <= Int(peerMaxFrame) else {
            return failed(WireError.frameTooLarge(length: UInt32(clamping: payload.readableBytes), maximum: peerMaxFrame))
        }
        write(.event, type: type, id: 0, payload: payload)
        return context.eventLoop.makeSucceededVoidFuture()
    }

    func ping() -> EventLoopFuture<Void> {
        guard let context, phase == .open else { return failed(WireConnectionError.closed(closeReason ?? "the connection is closed")) }
        let value = nextPingValue
        nextPingValue += 1
        let promise = context.eventLoop.makePromise(of: Void.self)
        pings[value] = promise
        write(.ping, type: PingData.messageType, id: 0, payload: PingData(opaque: value).encoded())
        return promise.futureResult
    }

    /// GOAWAY, then close once the requests in flight both ways are answered (or the grace
    /// period ends). The future completes when the connection is closed.
    func shutdown(reason: String) -> EventLoopFuture<Void> {
        guard let context else { return failed(WireConnectionError.notOpen) }
        let closed = context.channel.closeFuture
        guard phase != .closed, phase != .draining else { return closed }
        if phase != .open {
            close()
            return closed
        }
        if !goawaySent {
            goawaySent = true
            write(.goaway, type: GoAway.messageType, id: 0,
                  payload: GoAway(lastRequestID: lastPeerRequestID, code: WireErrorCode.shuttingDown.rawValue, reason: reason).encoded())
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: configuration.shutdownGrace) {
                let handler = bound.value
                if handler.phase != .closed {
                    handler.logger.warning("closing with \(handler.handlers.count) requests still running after the shutdown grace period")
                    handler.close()
                }
            }
        }
        let promise = context.eventLoop.makePromise(of: Void.self)
        drained.append(promise)
        checkDrained()
        return promise.futureResult.flatMap { closed }
    }

    private func checkDrained() {
        if phase == .draining {
            if handlers.isEmpty { close() }
            return
        }
        guard phase != .closed, goawaySent || goawayReceived != nil, pending.isEmpty, handlers.isEmpty else { return }
        let waiters = drained
        drained = []
        if goawaySent || !waiters.isEmpty {
            close()
        }
        for waiter in waiters { waiter.succeed(()) }
    }

    // MARK: - Timers

    private func onTick() {
        guard phase != .closed else { return }
        let now = NIODeadline.now()
        switch phase {
        case .handshaking, .awaitingPreamble:
            if now - startedAt > configuration.preambleTimeout {
                closeReason = phase == .handshaking ? "no TLS handshake within the preamble timeout" : "no preamble within the preamble timeout"
                logger.warning("closing: \(closeReason!) (\(configuration.preambleTimeout.nanoseconds / 1_000_000) ms)")
                close()
            }
        case .open:
            if let since = clock.partialSince, now - since > configuration.frameTimeout {
                fail(.protocolViolation, "a frame took longer than \(configuration.frameTimeout.nanoseconds / 1_000_000) ms to arrive", log: .warning)
                return
            }
            if let ping = keepalive {
                if now - ping.sentAt > configuration.pingTimeout {
                    closeReason = "the peer did not answer a keep-alive ping"
                    logger.warning("closing: the peer did not answer a keep-alive ping within \(configuration.pingTimeout.nanoseconds / 1_000_000) ms")
                    close()
                }
            } else if now - lastReadAt > configuration.idleTimeout {
                let value = nextPingValue
                nextPingValue += 1
                keepalive = (value, now)
                write(.ping, type: PingData.messageType, id: 0, payload: PingData(opaque: value).encoded())
            }
        case .draining, .closed:
            break
        }
    }

    // MARK: - Writing and closing

    private func write(_ kind: FrameKind, flags: UInt8 = 0, type: MessageType, id: UInt64, payload: ByteBuffer) {
        guard let context, phase == .open || phase == .draining else { return }
        let header = FrameHeader(length: UInt32(payload.readableBytes), kind: kind, flags: flags, messageType: type, id: id)
        if payload.readableBytes <= 16 << 10 {
            var buffer = context.channel.allocator.buffer(capacity: FrameHeader.size + payload.readableBytes)
            header.write(to: &buffer)
            var payload = payload
            buffer.writeBuffer(&payload)
            context.write(wrapOutboundOut(buffer), promise: nil)
        } else {
            var buffer = context.channel.allocator.buffer(capacity: FrameHeader.size)
            header.write(to: &buffer)
            context.write(wrapOutboundOut(buffer), promise: nil)
            context.write(wrapOutboundOut(payload), promise: nil)
        }
        if reading { needsFlush = true } else { context.flush() }
    }

    private func sendPreamble() {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: Preamble.size)
        Preamble(maxFrameSize: configuration.limits.maxFrameSize).write(to: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    enum LogLevel { case warning, error }

    /// A connection-level failure: log it, send GOAWAY with the code and reason, read no
    /// more, answer the requests already accepted (for a short while), and close.
    private func fail(_ code: WireErrorCode, _ reason: String, log level: LogLevel) {
        guard phase != .closed, phase != .draining, let context else { return }
        let subject = peer.map { "\($0)" } ?? "unidentified peer"
        switch level {
        case .warning: logger.warning("closing connection with \(subject): \(code): \(reason)")
        case .error: logger.error("closing connection with \(subject): \(code): \(reason)")
        }
        closeReason = "\(code): \(reason)"
        goawaySent = true
        let wasOpen = phase == .open
        phase = .draining
        write(.goaway, type: GoAway.messageType, id: 0,
              payload: GoAway(lastRequestID: lastPeerRequestID, code: code.rawValue, reason: reason).encoded())
        context.flush()
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        let error = WireConnectionError.closed(closeReason!)
        for id in pending.keys { failCall(id, error) }
        for (_, stream) in inboundStreams { stream.continuation?.finish(throwing: error) }
        inboundStreams = [:]
        guard wasOpen, !handlers.isEmpty else {
            close()
            return
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(1)) {
            if bound.value.phase == .draining { bound.value.close() }
        }
    }

    private func close() {
        guard let context else { return }
        phase = .closed
        context.close(promise: nil)
        teardown()
    }

    /// Fails everything still waiting; runs once the connection cannot carry more frames.
    private func teardown() {
        phase = .closed
        guard !tornDown else { return }
        tornDown = true
        timer?.cancel()
        timer = nil
        let reason = closeReason ?? "the peer closed the connection"
        let error: any Error = goawayReceived.map { WireConnectionError.goaway(code: $0.code, reason: $0.reason) }
            ?? WireConnectionError.closed(reason)
        ready.fail(WireConnectionError.handshake(reason))
        for (id, _) in pending { failCall(id, error) }
        for (_, stream) in outboundStreams { for waiter in stream.waiting { waiter.promise.fail(error) } }
        outboundStreams = [:]
        for (_, stream) in inboundStreams { stream.continuation?.finish(throwing: error) }
        inboundStreams = [:]
        for (_, task) in handlers { task.cancel() }
        handlers = [:]
        for (_, promise) in pings { promise.fail(error) }
        pings = [:]
        let waiters = drained
        drained = []
        for waiter in waiters { waiter.succeed(()) }
        eventSink.finish()
        connection = nil
    }

    private func failed<T>(_ error: any Error) -> EventLoopFuture<T> {
        guard let context else { return identity.loop.makeFailedFuture(error) }
        return context.eventLoop.makeFailedFuture(error)
    }

    /// A TLS failure as a sentence: BoringSSL's reason, never its source path.
    static func describe(_ error: any Error, side: ConnectionSide) -> String {
        let text = "\(error)"
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") {
            return "the peer presented no certificate"
        }
        if text.contains("UNSUPPORTED_PROTOCOL") || text.contains("PROTOCOL_VERSION") {
            return "the peer does not speak TLS 1.3"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") {
            return "the peer does not speak TLS"
        }
        if let range = text.range(of: "_ALERT_") {
            let alert = text[range.upperBound...].prefix { $0.isLetter || $0 == "_" }.lowercased().replacingOccurrences(of: "_", with: " ")
            let peer = side == .client ? "the server" : "the client"
            return "\(peer) did not accept this certificate (TLS alert: \(alert)); is it issued by this cluster's CA, unexpired, and for the identity meant?"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the peer's certificate could not be verified"
        }
        // BoringSSL's reason code without the file and line it was raised at.
        if let reason = text.range(of: #"OPENSSL_internal:[A-Z0-9_]+"#, options: .regularExpression) {
            return "TLS failed: " + text[reason].dropFirst("OPENSSL_internal:".count).lowercased().replacingOccurrences(of: "_", with: " ")
        }
        return text
    }
}
