public import AgentCore

/// A report of a driver that nobody asked for: an LPAR that was up failed, an L2 VM changed.
public struct DriverEvent: Sendable, Equatable {
    public var lpar: String
    public var report: DriverReport

    public init(lpar: String, report: DriverReport) {
        self.lpar = lpar
        self.report = report
    }
}

/// How the agent runs LPARs on one backend: the simulated one (`SimLPARDriver`) or KVM
/// (`KVMLPARDriver`, each LPAR its own process), picked at start. Every operation returns
/// when it is done without blocking the caller's actor: blocking work runs on threads of the
/// driver's own.
public protocol LPARDriver: AnyObject, Sendable {
    /// The reports nobody asked for; ends at `shutdown`.
    var events: AsyncStream<DriverEvent> { get }
    /// The most L2 VMs one guest hypervisor runs on this backend; nil: no limit.
    var vmSlots: Int? { get }

    /// Starts the LPAR's guest: `started`, or `startFailed` with the reason.
    func start(_ launch: LPARLaunch) async -> DriverReport
    /// Stops the LPAR's guest (killing it when it does not stop): `stopped`.
    func stop(_ lpar: String) async -> DriverReport
    /// Deletes the LPAR's own disk image and zeroes its LUN range of the shared disk.
    func releaseDisk(_ lpar: String, luns: Range<Int>?) async -> DriverReport
    /// Moves the running shared LPARs onto the pool's cores.
    func setPool(_ cores: [Int]) async
    /// Creates an L2 VM in the LPAR's guest hypervisor; its start or failure comes as an event.
    func createVM(_ vm: VMRequest, slot: Int) async
    func deleteVM(partition: String, name: String, slot: Int) async
    /// The measurements that go with a heartbeat (the sim backend first runs every VM one
    /// slice of virtual time further).
    func heartbeatObservations() async -> [String: LPARObservation]
    /// The host process of each LPAR that has one (kvm: its `lpar-host`), by LPAR name.
    func processIDs() async -> [String: Int32]
    /// Stops every LPAR; the agent is shutting down.
    func shutdown() async
}
