import Foundation
public import Logging
import NIOCore
public import Partitioner
import Protos
public import ServiceLifecycle
public import Wire
import WireCodec

/// What `blade-agent run` needs, resolved from flags and the config file.
public struct AgentSettings: Sendable {
    public var controller: Endpoint
    public var bladeID: String
    public var resources: BladeResources
    public var diskBytes: UInt64
    public var chassis: String
    public var rack: String
    public var powerDomain: String
    public var tls: TLSIdentity
    public var backend: String = "sim"
    /// Overrides the controller's heartbeat interval when set.
    public var heartbeatIntervalMillis: UInt64?
    public var sliceSeconds: Double = 0.002
    /// sim backend: bytes per second each running LPAR's guest writes.
    public var simDirtyBytesPerSecond: UInt64 = 0
    /// The kvm backend's settings; nil runs the sim backend.
    public var kvm: KVMRuntimeSettings?
    /// Where the agent's own listener binds (`--listen`); nil: no listener.
    public var listen: Endpoint?

    public init(controller: Endpoint, bladeID: String, resources: BladeResources, diskBytes: UInt64, chassis: String,
                rack: String, powerDomain: String, tls: TLSIdentity) {
        self.controller = controller
        self.bladeID = bladeID
        self.resources = resources
        self.diskBytes = diskBytes
        self.chassis = chassis
        self.rack = rack
        self.powerDomain = powerDomain
        self.tls = tls
    }
}

/// The agent's link to the controller: dial (mTLS), register, heartbeat with the actual
/// state, execute commands; on any failure, dial again with exponential backoff.
public struct AgentService: Service {
    public let settings: AgentSettings
    public let runtime: BladeRuntime
    public let logger: Logger

    public init(settings: AgentSettings, logger: Logger) throws(PartitionerError) {
        self.settings = settings
        self.logger = logger
        self.runtime = try BladeRuntime(bladeID: settings.bladeID, resources: settings.resources, sliceSeconds: settings.sliceSeconds,
                                        simDirtyBytesPerSecond: settings.simDirtyBytesPerSecond,
                                        kvm: settings.kvm, logger: logger)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var backoff: Duration = .milliseconds(200)
            while !Task.isCancelled {
                do {
                    try await session()
                    backoff = .milliseconds(200)
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("controller link down; dialing again", metadata: [
                        "controller.endpoint": "\(settings.controller)", "error": "\(error)",
                        "backoff.ms": "\(backoff.components.seconds * 1000 + backoff.components.attoseconds / 1_000_000_000_000_000)"])
                }
                let jitter = Duration.milliseconds(Int64.random(in: 0...100))
                try? await Task.sleep(for: backoff + jitter)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        await runtime.shutdown()
    }

    /// One connection's life: register, then heartbeat until it fails.
    func session() async throws {
        var router = WireRouter()
        let runtime = self.runtime
        router.on(AgentCommandRequest.self) { message, _ in await runtime.execute(message) }
        AgentRequests.install(on: &router, runtime: runtime)
        let connection = try await WireClient.connect(host: settings.controller.host, port: settings.controller.port,
                                                      tls: settings.tls, server: .role(.controller), service: router, logger: logger,
                                                      connectTimeout: .seconds(5))
        defer { Task { await connection.close(reason: "agent session over") } }
        let resources = settings.resources
        let registration = RegisterBladeRequest(
            bladeID: settings.bladeID, cores: UInt32(clamping: resources.coreCount),
            memoryBytes: resources.memoryBytes - resources.l0ReservedBytes,
            disks: resources.disks.map { DiskInventory(id: $0.id, lunCount: UInt32(clamping: $0.lunCount), shared: $0.shared) },
            nics: resources.nics.map(\.id), nestedCapable: resources.nestedCapable,
            labels: Labels(chassis: settings.chassis, rack: settings.rack, powerDomain: settings.powerDomain),
            agentVersion: "0.1.0", backend: settings.backend, diskBytes: settings.diskBytes,
            migrationAddress: await runtime.migrationAddress)
        let answer = try await connection.call(registration, expecting: RegisterBladeResponse.self)
        let interval = settings.heartbeatIntervalMillis ?? UInt64(answer.heartbeatIntervalMillis)
        logger.notice("registered with the controller", metadata: [
            "blade.id": "\(settings.bladeID)", "controller.endpoint": "\(settings.controller)", "heartbeat.ms": "\(interval)"])
        await runtime.link(.up)
        do {
            while !Task.isCancelled {
                if let beat = await runtime.tick() {
                    _ = try await connection.call(beat, expecting: HeartbeatResponse.self, timeout: .seconds(5))
                }
                await runtime.nextHeartbeat(after: .milliseconds(Int64(interval)))
                try Task.checkCancellation()
            }
        } catch {
            await runtime.link(.down)
            throw error
        }
        await runtime.link(.down)
    }
}
