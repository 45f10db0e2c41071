import NIOCore
import PropertyBased
import Testing
import WireCodec
@testable import Protos

let text = Gen.character(in: " "..."\u{2FFF}").string(of: 0...40)
let name = Gen.letterOrNumber.string(of: 1...20)
let bytes = Gen.uint8().array(of: 0...300)

let quota = zip(Gen.uint32(), Gen.uint64(), Gen.uint64(), Gen.uint32().optional).map { t in
    TenantQuota(maxCores: t.0, maxMemoryBytes: t.1, maxDiskBytes: t.2, maxPartitions: t.3)
}

let antiAffinity = zip(name, Gen<SpreadLevel>.case, Gen.bool, Gen.uint32().optional).map { t in
    AntiAffinity(group: t.0, level: t.1, hard: t.2, maxPerDomain: t.3)
}

let partitionSpec = zip(
    zip(name, name, Gen.uint32(), Gen.uint64(), Gen.uint64()),
    zip(Gen<CPUMode>.case, Gen.uint32().optional, Gen.bool, Gen.bool, antiAffinity.optional, Gen<Isolation>.case)
).map { t in
    PartitionSpec(name: t.0.0, tenant: t.0.1, cores: t.0.2, memoryBytes: t.0.3, diskBytes: t.0.4, cpuMode: t.1.0,
                  serviceRatio: t.1.1, vmm: t.1.2, shadowVMCS: t.1.3, antiAffinity: t.1.4, isolation: t.1.5)
}

let counters = zip(Gen.uint64(), Gen.uint64(), Gen.uint64(), Gen.uint64(), Gen.uint64()).map { t in
    LPARCounters(l2Exits: t.0, reflected: t.1, trappedVMX: t.2, servedByShadow: t.3, l0Nanoseconds: t.4)
}

let lparStatus = zip(name, Gen<ReportedLPARState>.case, text.optional, counters.optional).map { t in
    LPARStatus(name: t.0, failureReason: t.2, counters: t.3, state: t.1)
}

/// decode(encode(x)) == x, and the encoding is canonical.
func roundTrips<M: WireStruct & Equatable>(_ message: M) throws {
    let encoded = message.encoded()
    let decoded = try M.decode(encoded)
    #expect(decoded == message)
    #expect(decoded.encoded() == encoded)
}

@Suite struct PropertyTests {
    @Test func tenantRequestsRoundTrip() async {
        await propertyCheck(count: 300, input: name, quota) { name, quota in
            try? roundTrips(CreateTenantRequest(name: name, quota: quota))
            #expect((try? CreateTenantRequest.decode(CreateTenantRequest(name: name, quota: quota).encoded()))
                    == CreateTenantRequest(name: name, quota: quota))
        }
    }

    @Test func partitionRequestsRoundTrip() async {
        await propertyCheck(count: 300, input: partitionSpec) { spec in
            let request = CreatePartitionRequest(spec: spec)
            #expect((try? CreatePartitionRequest.decode(request.encoded())) == request)
            #expect((try? CreatePartitionRequest.decode(request.encoded()))?.encoded() == request.encoded())
        }
    }

    @Test func heartbeatsWithRepeatedNestedStatusRoundTrip() async {
        await propertyCheck(count: 200, input: name, Gen.uint64(), lparStatus.array(of: 0...12)) { blade, sequence, lpars in
            let heartbeat = HeartbeatRequest(bladeID: blade, sequence: sequence, lpars: lpars)
            #expect((try? HeartbeatRequest.decode(heartbeat.encoded())) == heartbeat)
        }
    }

    @Test func bytesAndSignedValuesRoundTrip() async {
        await propertyCheck(count: 300, input: name, Gen.uint32(), bytes, bytes.optional) { id, vcpu, registers, nested in
            let state = VCPUStateRequest(migrationID: id, vcpu: vcpu, registers: registers, nestedState: nested)
            #expect((try? VCPUStateRequest.decode(state.encoded())) == state)
        }
        await propertyCheck(count: 300, input: Gen.int64()) { value in
            var writer = WireWriter()
            writer.int(1, value)
            var reader = WireReader(buffer: writer.buffer)
            let key = try? reader.next()
            #expect(key.flatMap { try? reader.int64($0) } == value)
        }
    }

    @Test func errorInfoWithAnyTextRoundTrips() async {
        await propertyCheck(count: 300, input: Gen.uint32(), text, text.optional) { code, message, field in
            let info = ErrorInfo(code: code, message: message, field: field)
            #expect((try? ErrorInfo.decode(info.encoded())) == info)
        }
    }
}
