public import Logging
import InputText
import Protos
public import ServiceLifecycle
public import Wire

/// The requests the agent itself serves, on its link to the controller and on its own
/// listener alike: the blade's actual LPARs (admin and controller only, by the catalogue).
enum AgentRequests {
    static func install(on router: inout WireRouter, runtime: BladeRuntime) {
        let blade = runtime.bladeID
        router.on(InspectBladeRequest.self) { message, _ in
            guard message.blade == blade else {
                throw WireFailure(.notFound, "this agent runs blade \(blade), not \(InputText.shown(message.blade))")
            }
            return await runtime.inspect()
        }
        router.on(EchoRequest.self) { message, _ in EchoResponse(payload: message.payload) }
    }

    /// Incoming migrations: only on the agent's own listener (another agent dials it).
    static func installMigrations(on router: inout WireRouter, runtime: BladeRuntime) {
        router.on(MigrationBeginRequest.self) { message, request in
            let receiver = try await runtime.admitMigration(message, from: request.peer)
            return await receiver.receive(message, body: request.body)
        }
    }
}

/// The agent's own mutual-TLS listener (`blade-agent run --listen`): an operator or a test
/// harness reads the blade's actual LPARs from it even while the controller is down.
public final class AgentListener: Service, Sendable {
    let server: WireServer

    public init(endpoint: Endpoint, tls: TLSIdentity, runtime: BladeRuntime, logger: Logger) throws {
        var router = WireRouter()
        AgentRequests.install(on: &router, runtime: runtime)
        AgentRequests.installMigrations(on: &router, runtime: runtime)
        server = try WireServer(host: endpoint.host, port: endpoint.port, tls: tls, service: router, logger: logger)
    }

    /// Binds the socket; returns the port actually bound.
    public func start() async throws -> Int {
        try await server.start().port ?? 0
    }

    public func run() async throws { try await server.run() }
}
