import Foundation
import Testing
@testable import VMX

/// One line of the SDM Appendix B transcription.
struct SDMEntry: CustomStringConvertible, Sendable {
    var name: String
    var encoding: UInt32
    var width: FieldWidth
    var type: FieldType
    var section: String
    var description: String { "\(section) \(name)" }
}

enum SDMTable {
    static let entries: [SDMEntry] = load()

    static func load() -> [SDMEntry] {
        guard let url = Bundle.module.url(forResource: "sdm-appendix-b", withExtension: "txt", subdirectory: "Fixtures"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        var entries: [SDMEntry] = []
        var section = ""
        var width = FieldWidth.bits16
        var type = FieldType.control
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#") || line.isEmpty { continue }
            if line.hasPrefix("[") {
                let parts = line.dropFirst().dropLast().split(separator: " ")
                section = String(parts[0])
                width = ["16": .bits16, "32": .bits32, "64": .bits64, "natural": .natural][String(parts[1])]!
                type = ["control": .control, "exit-information": .vmExitInformation, "guest": .guestState,
                        "host": .hostState][String(parts[2])]!
                continue
            }
            let parts = line.split(separator: " ")
            let value = UInt32(parts[1].dropFirst(2), radix: 16)!
            entries.append(SDMEntry(name: String(parts[0]), encoding: value, width: width, type: type, section: section))
        }
        return entries
    }
}

@Suite struct FieldEncodingTests {
    @Test func theTranscriptionIsComplete() {
        #expect(SDMTable.entries.count == 195)
        #expect(VMCSField.catalog.count == SDMTable.entries.count)
    }

    @Test(arguments: SDMTable.entries)
    func everyFieldMatchesTheSDM(_ entry: SDMEntry) throws {
        let field = try #require(VMCSField.named(entry.name), "\(entry.name) is not in the catalog")
        #expect(field.rawValue == entry.encoding)
        #expect(field.width == entry.width, "width of \(entry.name)")
        #expect(field.type == entry.type, "type of \(entry.name)")
        #expect(field.accessType == (entry.name.hasSuffix("_HIGH") ? .high : .full))
        #expect(!field.hasReservedBitsSet)
        #expect(field.isReadOnly == (entry.type == .vmExitInformation))
        #expect(field.linuxName == entry.name)
    }

    @Test func highAccessExistsOnlyForSixtyFourBitFields() {
        for field in VMCSField.all where field.accessType == .high {
            #expect(field.width == .bits64, "\(field)")
            #expect(VMCSField.all.contains(field.fullField), "\(field) has no full field")
        }
    }

    @Test func decodesTheEncodingBits() {
        let rip = VMCSField.guestRIP
        #expect(rip.rawValue == 0x681E)
        #expect(rip.width == .natural && rip.type == .guestState && rip.accessType == .full)
        #expect(rip.index == 0xF)
        #expect(VMCSField.tscOffsetHigh.accessType == .high)
        #expect(VMCSField.tscOffsetHigh.fullField == .tscOffset)
        #expect(VMCSField.vmExitReason.isReadOnly)
        #expect(VMCSField.vmExitReason.bitWidth == 32)
        #expect(VMCSField.guestESSelector.bitWidth == 16)
        #expect(VMCSField(0x1_0000).hasReservedBitsSet)
        #expect(VMCSField(0x1000).hasReservedBitsSet)
        #expect(VMCSField(0x8000).bitmapIndex == nil)
        #expect(VMCSField.named("0x681e") == .guestRIP)
        #expect(VMCSField.named("guest_rip") == .guestRIP)
        #expect(VMCSField.named("NOT_A_FIELD") == nil)
    }
}

@Suite struct RegionAndCapabilityTests {
    @Test func regionHeaderCarriesTheShadowIndicator() {
        let header = VMCSRegionHeader(revisionIdentifier: 0x1234_5678, isShadow: true)
        #expect(header.firstDword == 0x9234_5678)
        let decoded = VMCSRegionHeader(firstDword: 0x9234_5678)
        #expect(decoded.isShadow)
        #expect(decoded.revisionIdentifier == 0x1234_5678)
        #expect(VMCSRegionHeader(revisionIdentifier: 0xFFFF_FFFF).revisionIdentifier == 0x7FFF_FFFF)
    }

    @Test func basicAndMiscReportWhatL0Offers() {
        let caps = VMXCapabilities.nestorDefault(vmwriteToReadOnlyFields: true)
        let basic = caps.read(.basic)
        #expect(UInt32(basic & 0x7FFF_FFFF) == caps.revisionIdentifier)
        #expect(basic & (1 << 31) == 0)
        #expect((basic >> 32) & 0x1FFF == 4096)
        #expect((basic >> 50) & 0xF == 6)
        #expect(basic & (1 << 55) != 0)
        #expect(caps.read(.misc) & (1 << 29) != 0)
        #expect(VMXCapabilities.nestorDefault(vmwriteToReadOnlyFields: false).read(.misc) & (1 << 29) == 0)
    }

    @Test func controlCapabilitiesSplitAllowedZeroAndOne() {
        let cap = ControlCapability(msrValue: 0x0000_00FF_0000_0016)
        #expect(cap.mustBeOne == 0x16)
        #expect(cap.mayBeOne == 0xFF)
        #expect(cap.permits(0x16))
        #expect(cap.permits(0x17))
        #expect(!cap.permits(0x06))
        #expect(!cap.permits(0x116))
        #expect(cap.violations(of: 0x106) == 0x110)
    }

    @Test func vmcsShadowingIsSecondaryControlBit14() {
        #expect(SecondaryControls.vmcsShadowing.rawValue == 1 << 14)
        // L0 keeps shadowing for itself: L1 is not offered it.
        #expect(VMXCapabilities.nestorDefault().secondary.mayBeOne & (1 << 14) == 0)
    }

    @Test func legacyProcessorControlsReportCR3ExitingAsDefaultOne() {
        let caps = VMXCapabilities.nestorDefault()
        let legacy = ControlCapability(msrValue: caps.read(.processorControls))
        let trueControls = ControlCapability(msrValue: caps.read(.trueProcessorControls))
        #expect(legacy.mustBeOne & (1 << 15) != 0)
        #expect(trueControls.mustBeOne & (1 << 15) == 0)
    }
}
