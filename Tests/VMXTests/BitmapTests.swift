import Testing
@testable import VMX

@Suite struct BitmapTests {
    @Test func linuxDefaultSetHas24ReadWriteAnd12ReadOnlyFields() {
        #expect(ShadowFieldSet.linuxKVM.readWrite.count == 24)
        #expect(ShadowFieldSet.linuxKVM.readOnly.count == 12)
        #expect(ShadowFieldSet.linuxKVM.problem() == nil)
        #expect(ShadowFieldSet.linuxKVM310.problem() == nil)
        #expect(!ShadowFieldSet.linuxKVM.all.contains(.vmInstructionError))
    }

    @Test(arguments: ShadowFieldSet.linuxKVM.all)
    func aShadowedFieldNeverTrapsOnRead(_ field: VMCSField) {
        #expect(!ShadowFieldSet.linuxKVM.vmreadBitmap.traps(field))
    }

    @Test func writesPassOnlyForReadWriteFields() {
        let set = ShadowFieldSet.linuxKVM
        for field in set.readWrite { #expect(!set.vmwriteBitmap.traps(field), "\(field)") }
        for field in set.readOnly { #expect(set.vmwriteBitmap.traps(field), "\(field)") }
    }

    @Test func anUnshadowedFieldAlwaysTraps() {
        let set = ShadowFieldSet.linuxKVM
        let shadowed = Set(set.all)
        for field in VMCSField.all where !shadowed.contains(field) {
            #expect(set.vmreadBitmap.traps(field), "\(field)")
            #expect(set.vmwriteBitmap.traps(field), "\(field)")
        }
        #expect(set.vmreadBitmap.passCount == 36)
        #expect(set.vmwriteBitmap.passCount == 24)
    }

    @Test(arguments: [UInt64(0x8000), 0x1_681E, 0x1_0000_681E, 0xFFFF_FFFF_FFFF_FFFF])
    func encodingsAboveBit14AlwaysTrap(_ encoding: UInt64) {
        var bitmap = VMXAccessBitmap.trapAll
        bitmap.pass(.guestRIP)
        #expect(!bitmap.traps(0x681E))
        #expect(bitmap.traps(encoding))
    }

    @Test func thePageImageRoundTrips() throws {
        let bitmap = ShadowFieldSet.linuxKVM.vmreadBitmap
        let page = bitmap.page
        #expect(page.count == 4096)
        // GUEST_RIP 0x681E: byte 0x681E / 8, bit 0x681E % 8, clear.
        #expect(page[0x681E / 8] & (1 << (0x681E % 8)) == 0)
        #expect(try #require(VMXAccessBitmap(page: page)) == bitmap)
        #expect(VMXAccessBitmap(page: [0]) == nil)
    }

    @Test func aCustomSetIsCheckedForItsProblems() {
        #expect(ShadowFieldSet(name: "x", readOnly: [], readWrite: [.vmInstructionError]).problem() != nil)
        #expect(ShadowFieldSet(name: "x", readOnly: [], readWrite: [.vmExitReason]).problem() != nil)
        #expect(ShadowFieldSet(name: "x", readOnly: [VMCSField(0x6FFE)], readWrite: []).problem() != nil)
        #expect(ShadowFieldSet(name: "x", readOnly: [.vmExitReason], readWrite: [.guestRIP, .guestRIP]).readWrite.count == 1)
    }
}

@Suite struct QualificationTests {
    @Test func ioQualificationRoundTrips() throws {
        let q = IOExitQualification(size: 2, direction: .output, port: 0xC050)
        #expect(q.rawValue == 0xC050_0001)
        #expect(try #require(IOExitQualification(rawValue: q.rawValue)) == q)
        let input = IOExitQualification(size: 4, direction: .input, port: 0x60, isString: true, isRepeated: true, operand: .immediate)
        #expect(input.rawValue == 0x60_007B)
        #expect(IOExitQualification(rawValue: 2) == nil)
    }

    @Test func crQualificationRoundTrips() {
        let q = CRAccessQualification(controlRegister: 3, accessType: .movToCR, generalRegister: 5)
        #expect(q.rawValue == 0x503)
        #expect(CRAccessQualification(rawValue: q.rawValue) == q)
        let lmsw = CRAccessQualification(controlRegister: 0, accessType: .lmsw, lmswSourceData: 0x1)
        #expect(lmsw.rawValue == 0x1_0030)
    }

    @Test func eptQualificationRoundTrips() {
        let q = EPTViolationQualification(write: true, entryReadable: true, linearAddressValid: true,
                                          accessToTranslatedAddress: true)
        #expect(q.rawValue == 0x18A)
        #expect(EPTViolationQualification(rawValue: 0x18A) == q)
    }

    @Test func interruptionInfoRoundTrips() {
        let info = InterruptionInfo(vector: 14, kind: .hardwareException, deliversErrorCode: true)
        #expect(info.rawValue == 0x8000_0B0E)
        #expect(InterruptionInfo(rawValue: 0x8000_0B0E) == info)
        #expect(!InterruptionInfo(rawValue: 0x0B0E).isValid)
    }

    @Test func exitReasonsAndErrorsUseTheSDMNumbers() {
        #expect(ExitReason.ioInstruction.rawValue == 30)
        #expect(ExitReason.eptViolation.rawValue == 48)
        #expect(ExitReason.hlt.name == "HLT")
        #expect(ExitReason.vmread.isVMXInstruction)
        #expect(VMInstructionError.vmlaunchNonClearVMCS.rawValue == 4)
        #expect(VMInstructionError.vmwriteReadOnlyComponent.rawValue == 13)
        #expect(VMInstructionError.vmxonInVMXRoot.rawValue == 15)
        #expect(VMInstructionError.invalidOperandToINVEPTOrINVVPID.rawValue == 28)
    }
}
