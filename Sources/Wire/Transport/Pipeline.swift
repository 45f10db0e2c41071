import Logging
import NIOCore
import NIOSSL
import NestorPKI
import WireCodec

/// What the TLS handshake learnt about the peer: its identity, or why it was refused.
/// Confined to the channel's event loop.
final class HandshakeIdentity {
    let loop: any EventLoop
    var peer: PeerIdentity?
    var refusal: PeerRefusal?

    init(loop: any EventLoop) { self.loop = loop }
}

/// The credentials and rules a peer runs with, prepared once and shared by its connections.
struct WireEndpoint: Sendable {
    let sslContext: NIOSSLContext
    let verifier: PeerVerifier
    let configuration: WireConfiguration
    let policy: RolePolicy
    let service: (any WireService)?
    let logger: Logger
    /// On a client, whom the server must be.
    let expectedPeer: ExpectedPeer?

    init(tls: TLSIdentity, server: Bool, configuration: WireConfiguration, policy: RolePolicy,
         service: (any WireService)?, logger: Logger, expectedPeer: ExpectedPeer? = nil) throws {
        do {
            sslContext = try NIOSSLContext(configuration: tls.tlsConfiguration(server: server))
        } catch {
            throw WireConnectionError.handshake("cannot load the TLS credentials: \(error)")
        }
        do {
            verifier = try PeerVerifier(caPEM: tls.caPEM)
        } catch {
            throw WireConnectionError.handshake(error.message)
        }
        self.configuration = configuration
        self.policy = policy
        self.service = service
        self.logger = logger
        self.expectedPeer = expectedPeer
    }

    /// Adds TLS, the frame decoder and the protocol engine to `channel` (on its event loop).
    /// The future completes once the handshake and the preambles are done.
    func configure(_ channel: any Channel, side: ConnectionSide) throws -> EventLoopFuture<WireConnection> {
        let loop = channel.eventLoop
        let identity = HandshakeIdentity(loop: loop)
        let verifier = self.verifier
        let usage: PeerVerifier.Usage = side == .server ? .client : .server
        let expected = side == .client ? expectedPeer : nil
        let verify: NIOSSLCustomVerificationCallback = { certificates, promise in
            let chain = certificates.compactMap { try? $0.toDERBytes() }
            switch verifier.verify(chainDER: chain, usage: usage) {
            case .success(let peer):
                if let mismatch = expected?.mismatch(peer) {
                    identity.refusal = PeerRefusal("the server presented \(mismatch)")
                    promise.succeed(.failed)
                    return
                }
                identity.peer = peer
                promise.succeed(.certificateVerified)
            case .failure(let refusal):
                identity.refusal = refusal
                promise.succeed(.failed)
            }
        }
        let operations = channel.pipeline.syncOperations
        switch side {
        case .server:
            try operations.addHandler(NIOSSLServerHandler(context: sslContext, customVerificationCallback: verify))
        case .client:
            try operations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: nil, customVerificationCallback: verify))
        }
        let clock = FrameClock()
        let maxFrame = configuration.limits.maxFrameSize
        try operations.addHandler(ByteToMessageHandler(TimedFrameDecoder(maxFrameSize: maxFrame, clock: clock),
                                                       maximumBufferSize: Int(maxFrame) + FrameHeader.size))
        let ready = loop.makePromise(of: WireConnection.self)
        try operations.addHandler(WireConnectionHandler(side: side, configuration: configuration, policy: policy, service: service,
                                                        clock: clock, identity: identity, logger: logger, ready: ready))
        return ready.futureResult
    }
}
