public import ClusterCore
import ClusterStore
import Foundation
public import Logging
import NIOCore
import Protos
public import ServiceLifecycle
public import Wire
import WireCodec

/// Everything `cluster-controller run` needs, resolved from flags and the config file.
public struct ControllerSettings: Sendable {
    public var listen: Endpoint = Endpoint(host: "127.0.0.1", port: 7400)
    public var dataDirectory: String = "/var/lib/nestor/controller"
    public var tls: TLSIdentity
    public var heartbeatIntervalMillis: UInt64 = 1000
    public var suspectAfterMillis: UInt64 = 3000
    public var unreachableAfterMillis: UInt64 = 6000
    public var commands: ClusterCommands = ClusterCommands()
    public var eventRetention = EventRetention()
    /// Safety checks removed for the fault harness (`TestSwitch`); empty in every deployment.
    public var testSwitches: Set<TestSwitch> = []

    public init(tls: TLSIdentity) { self.tls = tls }
}

/// How many events the store keeps, and for how long; older ones are compacted away.
public struct EventRetention: Sendable {
    public var count: Int
    public var maxAgeMillis: UInt64
    /// Compaction runs at start and then after every this many events written.
    public var compactEvery: Int

    public init(count: Int = 100_000, maxAgeMillis: UInt64 = 30 * 86_400_000, compactEvery: Int = 1_000) {
        self.count = count
        self.maxAgeMillis = maxAgeMillis
        self.compactEvery = compactEvery
    }
}

/// The controller as a running service: the store, the mTLS server and the lease checker.
public final class ControllerService: Sendable {
    let controller: Controller
    let server: WireServer
    let logger: Logger
    /// Held for as long as this service exists: one controller per data directory (none
    /// under the test switch `shared-store`).
    let lock: DataDirectoryLock?

    public init(settings: ControllerSettings, logger: Logger) throws {
        for testSwitch in settings.testSwitches.sorted(by: { $0.rawValue < $1.rawValue }) {
            logger.warning("test switch on: a safety check is removed; never run a real cluster like this",
                           metadata: ["test.switch": "\(testSwitch.rawValue)"])
        }
        lock = settings.testSwitches.contains(.sharedStore) ? nil : try DataDirectoryLock(directory: settings.dataDirectory)
        let store = try ClusterStore(directory: settings.dataDirectory, comparesGeneration: !settings.testSwitches.contains(.noStoreCAS))
        var controllerSettings = Controller.Settings()
        controllerSettings.heartbeatIntervalMillis = settings.heartbeatIntervalMillis
        controllerSettings.suspectAfterMillis = settings.suspectAfterMillis
        controllerSettings.unreachableAfterMillis = settings.unreachableAfterMillis
        controllerSettings.eventRetention = settings.eventRetention
        let controller = try Controller(store: store, commands: settings.commands, settings: controllerSettings, logger: logger)
        self.controller = controller
        self.logger = logger
        self.server = try WireServer(host: settings.listen.host, port: settings.listen.port, tls: settings.tls,
                                     service: AuditedService(router: Self.router(controller), controller: controller), logger: logger)
    }

    /// Binds the socket; returns the port actually bound.
    public func start() async throws -> Int {
        await controller.compactEvents()
        let address = try await server.start()
        return address.port ?? 0
    }

    /// The services to run: the server and the lease checker.
    public var services: [any Service] {
        [server, LeaseChecker(controller: controller, interval: .milliseconds(250))]
    }

    static func router(_ controller: Controller) -> WireRouter {
        var router = WireRouter()
        @Sendable func caller(_ request: WireRequest) -> Caller { WireMapping.caller(request.peer) }
        router.on(CreateTenantRequest.self) { message, request in try await controller.createTenant(message, by: caller(request)) }
        router.on(ListTenantsRequest.self) { message, request in try await controller.listTenants(message, by: caller(request)) }
        router.on(DeleteTenantRequest.self) { message, request in try await controller.deleteTenant(message, by: caller(request)) }
        router.on(CreatePartitionRequest.self) { message, request in try await controller.createPartition(message, by: caller(request)) }
        router.on(ListPartitionsRequest.self) { message, request in try await controller.listPartitions(message, by: caller(request)) }
        router.on(PartitionActionRequest.self) { message, request in try await controller.partitionAction(message, by: caller(request)) }
        router.on(CreateVMRequest.self) { message, request in try await controller.createVM(message, by: caller(request)) }
        router.on(ListVMsRequest.self) { message, request in try await controller.listVMs(message, by: caller(request)) }
        router.on(DeleteVMRequest.self) { message, request in try await controller.deleteVM(message, by: caller(request)) }
        router.on(ListBladesRequest.self) { message, request in try await controller.listBlades(message, by: caller(request)) }
        router.on(BladeActionRequest.self) { message, request in try await controller.bladeAction(message, by: caller(request)) }
        router.on(InspectBladeRequest.self) { message, request in try await controller.inspectBlade(message, by: caller(request)) }
        router.on(ListEventsRequest.self) { message, request in try await controller.listEvents(message, by: caller(request)) }
        router.on(MigratePartitionRequest.self) { message, request in try await controller.migratePartition(message, by: caller(request)) }
        router.on(ListMigrationsRequest.self) { message, request in try await controller.listMigrations(message, by: caller(request)) }
        router.on(ShowMigrationRequest.self) { message, request in try await controller.showMigration(message, by: caller(request)) }
        router.on(CancelMigrationRequest.self) { message, request in try await controller.cancelMigration(message, by: caller(request)) }
        router.on(WatchEventsRequest.self) { _, request in
            await controller.watch(request.connection, by: caller(request))
            return Ack(detail: "watching")
        }
        router.on(RegisterBladeRequest.self) { message, request in
            try await controller.register(message, by: caller(request), connection: request.connection)
        }
        router.on(HeartbeatRequest.self) { message, request in
            try await controller.heartbeat(message, by: caller(request), connection: request.connection)
        }
        router.on(EchoRequest.self) { message, _ in EchoResponse(payload: message.payload) }
        return router
    }
}

/// Checks the heartbeat leases a few times a second until shutdown.
struct LeaseChecker: Service {
    let controller: Controller
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await controller.tick()
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// The controller's requests, with every refusal by authorization handed to the audit trail.
struct AuditedService: WireService {
    let router: WireRouter
    let controller: Controller

    func handle(_ request: WireRequest) async throws -> WireReply {
        do {
            return try await router.handle(request)
        } catch let failure as WireFailure where failure.code == .permissionDenied || failure.audit != nil {
            let name = String(describing: type(of: request.message))
            await controller.refused(request.peer, request: name, failure)
            throw failure
        }
    }

    func refusedByRole(_ peer: PeerIdentity, messageType: MessageType, name: String) {
        let failure = WireFailure(.permissionDenied, "role \(peer.role.rawValue) may not send \(name)")
        Task { [controller] in await controller.refused(peer, request: name, failure) }
    }
}
