public import SeededRandom
import VMX
import Partitioner

/// What the simulated L2 guest executes next on a vCPU.
enum L2Action {
    case compute(Cycles)
    case exit(L2ExitKind)
    case effect(() -> Void)
    /// Ends an interrupt handler: interrupts are accepted again.
    case handlerEnd
}

/// The exits the simulated RHEL 6 guest makes.
enum L2ExitKind: Equatable {
    /// OUT to the virtio-blk queue-notify port.
    case kick
    case hlt
    /// A MOV to the local APIC page (xAPIC mode): EOI, ICR or TMICT.
    case apicWrite(offset: UInt64)
    /// L1 wants the vCPU back because an interrupt for L2 is pending (external interrupt).
    case externalInterrupt
    /// L1 asked for an interrupt-window exit and L2 is interruptible.
    case interruptWindow
}

/// A thread of the L2 guest bound to a vCPU: the workload's thread or a duty for another.
final class GuestThread {
    enum State { case runnable, waitingIO, waitingIPI, finished }
    let id: Int
    var state: State = .runnable
    var steps: [ChainStep] = []
    /// Guest work to do first when the thread runs again (the waker's side of a wake-up).
    var resumeWork: Cycles = 0
    let isWorkloadThread: Bool
    var duty: RemoteDuty?
    var dutyOrigin: Int = -1
    var dutyReplyTo: Int = -1
    var dutyWritesLeft = 0
    var dutyStarted = false

    init(id: Int, isWorkloadThread: Bool) {
        self.id = id
        self.isWorkloadThread = isWorkloadThread
    }
}

/// One simulated vCPU of an LPAR running a guest hypervisor: L1 (the RHEL 6.4 KVM model)
/// and the L2 guest it runs, in virtual time.
final class SimVCPU: VirtualCPU {
    enum Mode: Equatable { case l1, l2, halted }
    private enum Trap {
        case vmread(VMCSField, (UInt64) throws(SimError) -> [L1Op])
        case vmwrite
        case instruction(VMXInstruction, (VMXOutcome) throws(SimError) -> [L1Op])
        case l2Exit(L2ExitKind)
        case hlt
    }

    let index: Int
    unowned let lpar: SimLPAR
    let core: NestedVMXCore
    let l1: RHEL6KVMModel
    private let costs: PlatformCostModel
    private var rng: SplitMix64

    private(set) var clock: Cycles = 0
    private(set) var mode: Mode = .l1
    private var l1Stack: [L1Op] = []
    private var l2Stack: [L2Action] = []
    private var trap: Trap?
    private var l2State = VMCSState()
    private var handlerDepth = 0
    private var kickPending = false
    private var nextTickAt: Cycles?
    private var idleEntered = false
    private(set) var incoming: [(at: Cycles, interrupt: GuestInterrupt)] = []

    /// Threads of the L2 guest on this vCPU.
    var threads: [GuestThread] = []
    /// The block request the guest is submitting (read by L1's ioeventfd handler).
    var submittingRequest: Int?
    /// The IPI the guest is sending with its ICR write.
    var sendingIPI: (target: Int, purpose: IPIPurpose)?
    /// Cycles this vCPU spent in L0, L1 and L2.
    private(set) var l0Cycles: Cycles = 0
    private(set) var l1Cycles: Cycles = 0
    private(set) var l2Cycles: Cycles = 0
    private var lastCounters = NestedCounters()

    init(index: Int, lpar: SimLPAR, core: NestedVMXCore, costs: PlatformCostModel, rng: SplitMix64) {
        self.index = index
        self.lpar = lpar
        self.core = core
        self.costs = costs
        self.rng = rng
        self.l1 = RHEL6KVMModel(vcpu: index, costs: costs, environment: lpar)
    }

    // MARK: VirtualCPU

    func run() throws(BackendError) -> VCPUExit {
        while true {
            do {
                if let exit = try step(until: .max) { return exit }
            } catch {
                throw .internalError(error.description)
            }
            if mode == .halted { throw .internalError("vCPU \(index) halted with no exit to report") }
        }
    }

    func resume(_ response: L0Response) throws(BackendError) {
        do { try apply(response) } catch { throw .internalError(error.description) }
    }

    // MARK: Start

    /// Queues L1's setup of its L2 vCPU (VMXON, VMCLEAR, VMPTRLD, the VMWRITEs of KVM's
    /// vmx_vcpu_setup and vcpu reset, VMLAUNCH).
    func startGuestHypervisor(layout: L1MemoryLayout) {
        l1Stack = L1Setup.ops(layout: layout, vcpu: index).reversed()
        mode = .l1
    }

    func isRunnable(at limit: Cycles) -> Bool { mode != .halted && clock < limit }

    /// The earliest time an interrupt is due for this (halted) vCPU.
    var nextIncoming: Cycles? { incoming.first?.at }

    func deliver(_ interrupt: GuestInterrupt, at time: Cycles) {
        let position = incoming.firstIndex { $0.at > time } ?? incoming.count
        incoming.insert((time, interrupt), at: position)
    }

    /// Wakes a halted vCPU at `time` because an interrupt arrived for it.
    func wake(at time: Cycles) throws(SimError) {
        guard mode == .halted else { throw .unexpected("vCPU \(index) woken while not halted") }
        clock = max(clock, time)
        mode = .l1
        absorbIncoming()
        push(l1: l1.resumeAfterBlock())
    }

    // MARK: Stepping

    private func push(l1 ops: [L1Op]) { l1Stack.append(contentsOf: ops.reversed()) }
    private func push(l2 actions: [L2Action]) { l2Stack.append(contentsOf: actions.reversed()) }

    private func absorbIncoming() {
        while let first = incoming.first, first.at <= clock {
            incoming.removeFirst()
            l1.pendingInterrupts.append(first.interrupt)
            if mode == .l2 { kickPending = true }
        }
    }

    /// Runs until an exit for L0 (returned), the vCPU halts, or the clock reaches `limit`.
    func step(until limit: Cycles) throws(SimError) -> VCPUExit? {
        while clock < limit {
            switch mode {
            case .halted:
                return nil
            case .l1:
                if let exit = try stepL1() { return exit }
            case .l2:
                if let exit = try stepL2(limit: limit) { return exit }
            }
        }
        return nil
    }

    private func stepL1() throws(SimError) -> VCPUExit? {
        // Interrupts for L2 that arrive while L1 runs (a completion, an IPI, L2's timer in
        // L1's hrtimer) land in L1's APIC model; vcpu_enter_guest injects them on the next
        // entry without another exit.
        absorbIncoming()
        if let tick = nextTickAt, clock >= tick {
            nextTickAt = tick + costs.c(costs.guestTickPeriod)
            l1.pendingInterrupts.append(.timer)
        }
        guard let op = l1Stack.popLast() else { throw .model("vCPU \(index): L1 ran out of work in mode L1") }
        switch op {
        case .software(let cycles):
            clock += cycles
            l1Cycles += cycles
        case .later(let make):
            push(l1: make())
        case .vmread(let field, let next):
            switch core.vmx.nonRootRead(UInt64(field.rawValue)) {
            case .served(.read(let value)):
                charge(l1: costs.c(costs.vmcsAccess))
                push(l1: try next(value))
            case .served(let outcome):
                throw .model("VMREAD \(field) through the shadow failed: \(outcome)")
            case .exit:
                snapshot()
                trap = .vmread(field, next)
                return .vmxInstruction(.vmread(encoding: UInt64(field.rawValue)), context: .kernel)
            }
        case .vmwrite(let field, let value):
            switch core.vmx.nonRootWrite(UInt64(field.rawValue), value: value) {
            case .served(.succeeded):
                charge(l1: costs.c(costs.vmcsAccess))
            case .served(let outcome):
                throw .model("VMWRITE \(field) through the shadow failed: \(outcome)")
            case .exit:
                snapshot()
                trap = .vmwrite
                return .vmxInstruction(.vmwrite(encoding: UInt64(field.rawValue), value: value), context: .kernel)
            }
        case .vmresume:
            snapshot()
            trap = .instruction(.vmresume) { outcome throws(SimError) in
                throw .model("VMRESUME did not enter L2: \(outcome)")
            }
            return .vmxInstruction(.vmresume, context: .kernel)
        case .blockUntilInterrupt:
            absorbIncoming()
            if l1.pendingInterrupts.isEmpty {
                l1.didBlock()
                trap = .hlt
                return .hlt
            }
        case .vmx(let instruction, let next):
            snapshot()
            trap = .instruction(instruction, next)
            return .vmxInstruction(instruction, context: .kernel)
        }
        return nil
    }

    private func stepL2(limit: Cycles) throws(SimError) -> VCPUExit? {
        absorbIncoming()
        if handlerDepth == 0 {
            if let tick = nextTickAt, clock >= tick {
                // L1's hrtimer for L2's APIC timer fires on this CPU: the interrupt arrives
                // while L2 runs, so L2 exits to L0, which reflects it to L1.
                nextTickAt = tick + costs.c(costs.guestTickPeriod)
                l1.pendingInterrupts.append(.timer)
                kickPending = true
            }
            if kickPending {
                kickPending = false
                return takeExit(.externalInterrupt)
            }
            if l2Stack.isEmpty, interruptWindowRequested() {
                return takeExit(.interruptWindow)
            }
        }
        let action = l2Stack.popLast() ?? nextGuestAction()
        switch action {
        case .compute(let cycles):
            var chunk = min(cycles, limit - clock)
            if handlerDepth == 0, let tick = nextTickAt, tick > clock { chunk = min(chunk, tick - clock) }
            if handlerDepth == 0, let due = incoming.first?.at, due > clock { chunk = min(chunk, due - clock) }
            chunk = max(chunk, 1)
            clock += chunk
            l2Cycles += chunk
            if chunk < cycles { l2Stack.append(.compute(cycles - chunk)) }
        case .exit(let kind):
            return takeExit(kind)
        case .effect(let apply):
            apply()
        case .handlerEnd:
            handlerDepth -= 1
        }
        return nil
    }

    private func interruptWindowRequested() -> Bool {
        let controls = ProcessorControls(rawValue: UInt32(truncatingIfNeeded: core.vmx.peek(.cpuBasedVMExecControl) ?? 0))
        return controls.contains(.interruptWindowExiting)
    }

    private func takeExit(_ kind: L2ExitKind) -> VCPUExit {
        snapshot()
        trap = .l2Exit(kind)
        var exit = L2Exit(reason: .externalInterrupt, guestState: l2State)
        switch kind {
        case .kick:
            exit.reason = .ioInstruction
            exit.qualification = IOExitQualification(size: 2, direction: .output, port: RHEL6KVMModel.kickPort).rawValue
            exit.instructionLength = 2
        case .hlt:
            exit.reason = .hlt
            exit.instructionLength = 1
        case .apicWrite(let offset):
            exit.reason = .apicAccess
            exit.qualification = offset | (1 << 12)          // linear access, data write
            exit.guestPhysicalAddress = L1MemoryLayout.apicBase + offset
            l1.apicOffset = offset
        case .externalInterrupt:
            exit.reason = .externalInterrupt
            exit.interruptSource = .lpar
        case .interruptWindow:
            exit.reason = .interruptWindow
        }
        return .l2Exit(exit)
    }

    // MARK: L0's answers

    private func snapshot() { lastCounters = core.vmx.counters }

    private func charge(l1 cycles: Cycles) {
        clock += cycles
        l1Cycles += cycles
    }

    private func charge(l0 cycles: Cycles) {
        clock += cycles
        l0Cycles += cycles
        core.vmx.counters.l0Nanoseconds += UInt64((costs.seconds(cycles) * 1e9).rounded())
    }

    /// Cost of the shadow synchronisation L0 did since the last snapshot.
    private func shadowSyncCost() -> Cycles {
        let now = core.vmx.counters
        let fields = (now.fieldsCopiedToShadow - lastCounters.fieldsCopiedToShadow)
            + (now.fieldsCopiedToVMCS12 - lastCounters.fieldsCopiedToVMCS12)
        let syncs = (now.shadowSyncsToShadow - lastCounters.shadowSyncsToShadow)
            + (now.shadowSyncsToVMCS12 - lastCounters.shadowSyncsToVMCS12)
        return fields * costs.c(costs.vmcsAccess) + syncs * (2 * costs.c(costs.vmptrld) + costs.c(costs.vmclear))
    }

    private var trapCost: Cycles {
        costs.c(costs.vmTransition) + costs.c(costs.exitDispatch) + costs.c(costs.vmxEmulation)
            + Cycles(costs.vmxEmulationVMCSAccesses) * costs.c(costs.vmcsAccess)
    }

    private var nestedEntryCost: Cycles {
        let fields = Cycles(VMCSState.guestStateFields.count + costs.nestedEntryControlFields)
        return costs.c(costs.vmTransition) + costs.c(costs.exitDispatch) + costs.c(costs.nestedEntrySoftware)
            + fields * costs.c(costs.vmcsAccess) + costs.c(costs.vmptrld)
    }

    private var nestedExitCost: Cycles {
        let fields = Cycles(ExitRouting.savedGuestFields.count + VMCSState.exitInformationFields.count
                            + VMCSState.hostStateFields.count)
        return costs.c(costs.vmTransition) + costs.c(costs.exitDispatch) + costs.c(costs.nestedExitSoftware)
            + fields * costs.c(costs.vmcsAccess) + costs.c(costs.vmptrld)
    }

    private func apply(_ response: L0Response) throws(SimError) {
        guard let pending = trap else { throw .unexpected("vCPU \(index) resumed without a pending exit") }
        trap = nil
        if case .failLPAR(let reason) = response { throw .model("L0 failed the LPAR: \(reason)") }
        switch (pending, response) {
        case (.vmread(let field, let next), .completeVMX(let outcome)):
            charge(l0: trapCost + shadowSyncCost())
            guard case .read(let value) = outcome else { throw .model("trapped VMREAD \(field) failed: \(outcome)") }
            push(l1: try next(value))
        case (.vmwrite, .completeVMX(let outcome)):
            charge(l0: trapCost + shadowSyncCost())
            guard outcome == .succeeded else { throw .model("trapped VMWRITE failed: \(outcome)") }
        case (.instruction(let instruction, let next), .completeVMX(let outcome)):
            if case .enteredL2(let entry) = outcome {
                charge(l0: nestedEntryCost + shadowSyncCost())
                try enterL2(entry)
            } else {
                charge(l0: trapCost + shadowSyncCost())
                if case .failValid = outcome, let why = core.vmx.lastEntryFailure,
                   instruction == .vmlaunch || instruction == .vmresume {
                    throw .model("\(instruction.mnemonic) failed: \(why)")
                }
                push(l1: try next(outcome))
            }
        case (.l2Exit, .resumeL1):
            charge(l0: nestedExitCost + shadowSyncCost())
            mode = .l1
            push(l1: l1.handleExit())
        case (.l2Exit, .resumeL2):
            charge(l0: costs.c(costs.vmTransition) + costs.c(costs.exitDispatch))
        case (.hlt, .haltUntilInterrupt):
            mode = .halted
        default:
            throw .unexpected("vCPU \(index): L0 answered \(response) to a different exit")
        }
    }

    private func enterL2(_ entry: L2Entry) throws(SimError) {
        mode = .l2
        l2State = entry.guestState
        if let injection = entry.injection {
            guard let interrupt = l1.injectedInterrupt(vector: injection.vector) else {
                throw .model("L0 injected vector \(injection.vector), which L1 did not ask for")
            }
            handleInjected(interrupt)
        }
    }

    // MARK: The L2 guest kernel

    /// The guest's interrupt handler for an injected event, with its EOI.
    private func handleInjected(_ interrupt: GuestInterrupt) {
        handlerDepth += 1
        var actions: [L2Action] = []
        switch interrupt {
        case .timer:
            actions = [.compute(costs.c(costs.guestTimerTick)), .exit(.apicWrite(offset: RHEL6KVMModel.apicEOI)),
                       .exit(.apicWrite(offset: RHEL6KVMModel.apicTMICT))]
        case .blockCompletion(let request):
            actions = [.compute(costs.c(costs.guestBlockComplete) / 2), .exit(.apicWrite(offset: RHEL6KVMModel.apicEOI)),
                       .effect { [unowned self] in push(l2: lpar.completeRequest(request, handledOn: index)) }]
        case .ipi(let from, let purpose):
            actions = [.compute(costs.c(costs.guestIPIHandler)), .exit(.apicWrite(offset: RHEL6KVMModel.apicEOI)),
                       .effect { [unowned self] in
                           switch purpose {
                           case .wake(let thread, let afterIO): lpar.wakeThread(thread, afterIO: afterIO)
                           case .runDuty(let duty, let replyTo): addDuty(duty, origin: from, replyTo: replyTo)
                           }
                       }]
        }
        push(l2: actions + [.handlerEnd])
    }

    func addDuty(_ duty: RemoteDuty, origin: Int, replyTo: Int) {
        let thread = GuestThread(id: lpar.nextThreadID(home: index), isWorkloadThread: false)
        thread.duty = duty
        thread.dutyOrigin = origin
        thread.dutyReplyTo = replyTo
        thread.dutyWritesLeft = duty.blockWrites
        threads.append(thread)
        lpar.register(thread)
    }

    func attachWorkloadThread(_ thread: GuestThread) { threads.append(thread) }

    /// The guest scheduler: a runnable thread, else idle (NO_HZ, then HLT).
    private func nextGuestAction() -> L2Action {
        for thread in threads where thread.state == .finished { lpar.forget(thread) }
        threads.removeAll { $0.state == .finished }
        let runnable = threads.first { !$0.isWorkloadThread && $0.state == .runnable }
            ?? threads.first { $0.state == .runnable }
        if let thread = runnable {
            if idleEntered {
                idleEntered = false
                nextTickAt = clock + costs.c(costs.guestTickPeriod)
                return .effect { [unowned self] in
                    push(l2: [.compute(costs.c(costs.guestIdleTransition)),
                              .exit(.apicWrite(offset: RHEL6KVMModel.apicTMICT)),
                              .compute(costs.c(costs.guestContextSwitch))])
                }
            }
            if thread.resumeWork > 0 {
                let work = thread.resumeWork
                thread.resumeWork = 0
                return .compute(work)
            }
            return .effect { [unowned self] in run(thread) }
        }
        if !idleEntered {
            idleEntered = true
            nextTickAt = nil
            return .effect { [unowned self] in
                push(l2: [.compute(costs.c(costs.guestIdleTransition)),
                          .exit(.apicWrite(offset: RHEL6KVMModel.apicTMICT))])
            }
        }
        return .exit(.hlt)
    }

    /// Turns a thread's next step into guest actions.
    private func run(_ thread: GuestThread) {
        if !thread.isWorkloadThread {
            runDuty(thread)
            return
        }
        if thread.steps.isEmpty {
            thread.steps = lpar.nextOperation(thread: thread.id, rng: &rng)
            if thread.steps.isEmpty {
                thread.state = .finished
                return
            }
        }
        let step = thread.steps.removeFirst()
        switch step {
        case .compute(let cycles):
            push(l2: [.compute(cycles)])
        case .blockIO(let write):
            push(l2: [.compute(costs.c(costs.guestBlockSubmit)),
                      .effect { [unowned self] in
                          submittingRequest = lpar.newRequest(write: write, waiter: thread, on: index)
                          thread.state = .waitingIO
                      },
                      .exit(.kick)])
        case .remote(let duty):
            guard let target = lpar.otherVCPU(than: index, rng: &rng, busyOnly: false) else { return }
            push(l2: [.effect { [unowned self] in
                          sendingIPI = (target, .runDuty(duty, replyTo: thread.id))
                          if duty.reply { thread.state = .waitingIPI }
                      },
                      .exit(.apicWrite(offset: RHEL6KVMModel.apicICR))])
        case .waitRemote(let duty):
            // A lock held by a thread on another busy vCPU; if none is busy, nobody holds it.
            guard let holder = lpar.otherVCPU(than: index, rng: &rng, busyOnly: true) else { return }
            thread.state = .waitingIPI
            lpar.vcpus[holder].addDuty(RemoteDuty(compute: duty.delay + duty.compute, reply: true),
                                       origin: index, replyTo: thread.id)
        case .notify:
            push(l2: [.exit(.kick)])
        case .operationDone:
            lpar.countOperation()
        }
    }

    private func runDuty(_ thread: GuestThread) {
        guard let duty = thread.duty else { thread.state = .finished; return }
        if !thread.dutyStarted {
            thread.dutyStarted = true
            push(l2: [.compute(max(1, duty.compute))])
            return
        }
        if thread.dutyWritesLeft > 0 {
            thread.dutyWritesLeft -= 1
            push(l2: [.compute(costs.c(costs.guestBlockSubmit)),
                      .effect { [unowned self] in
                          submittingRequest = lpar.newRequest(write: true, waiter: thread, on: index)
                          thread.state = .waitingIO
                      },
                      .exit(.kick)])
            return
        }
        thread.state = .finished
        if duty.reply, thread.dutyOrigin >= 0 {
            let origin = thread.dutyOrigin
            let replyTo = thread.dutyReplyTo
            push(l2: [.effect { [unowned self] in sendingIPI = (origin, .wake(thread: replyTo, afterIO: false)) },
                      .exit(.apicWrite(offset: RHEL6KVMModel.apicICR))])
        }
    }

    // MARK: Accounting

    var cycleSplit: (l0: Cycles, l1: Cycles, l2: Cycles) { (l0Cycles, l1Cycles, l2Cycles) }
    var isInL2: Bool { mode == .l2 }
    var l2RIP: UInt64 { l2State.rip }
}
