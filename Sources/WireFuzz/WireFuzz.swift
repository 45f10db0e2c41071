import Foundation
import NIOCore
import Protos
import WireCodec

// The decoder's fuzz target. Built with `-sanitize=fuzzer -D FUZZING`, libFuzzer's driver
// runs it; built plainly, `wire-fuzz FILE...` replays inputs (a corpus or
// a crash) through the same function.
//
// An input's first byte chooses what the rest is: even, a byte stream (preamble and frames,
// each frame's payload decoded as its message type); odd, one payload decoded as the message
// type the byte selects. Whatever decodes must re-encode to bytes that decode to the same
// encoding again.

enum WireFuzz {
    static let limits = WireLimits(maxFrameSize: 1 << 16, maxDepth: 16, maxRepeated: 4096, maxStringLength: 4096)

    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let selector = bytes.first else { return }
        var buffer = ByteBuffer(bytes: bytes.dropFirst())
        if selector & 1 == 0 {
            var decoder = FrameDecoder(maxFrameSize: limits.maxFrameSize)
            while let item = try? decoder.next(from: &buffer) {
                if case .frame(let frame) = item { check(type: frame.messageType, payload: frame.payload) }
            }
        } else {
            let entries = NestorCatalog.entries
            check(type: entries[Int(selector >> 1) % entries.count].type, payload: buffer)
        }
    }

    static func check(type: MessageType, payload: ByteBuffer) {
        guard let message = try? NestorCatalog.decode(type: type, payload: payload, limits: limits) else { return }
        let once = message.encoded()
        guard let again = try? NestorCatalog.decode(type: type, payload: once, limits: limits) else {
            preconditionFailure("message type \(type): a decoded message re-encodes to bytes that do not decode")
        }
        precondition(again.encoded() == once, "message type \(type): re-encoding is not stable")
    }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    WireFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@main
struct WireFuzzDriver {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv, fuzzOneInput))
    }
}
#else
@main
struct WireFuzzReplay {
    static func main() {
        let files = CommandLine.arguments.dropFirst()
        guard !files.isEmpty else {
            FileHandle.standardError.write(Data("usage: wire-fuzz FILE... (replays inputs; fuzzing needs -sanitize=fuzzer -D FUZZING)\n".utf8))
            exit(2)
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("wire-fuzz: cannot read \(file)\n".utf8))
                exit(2)
            }
            data.withUnsafeBytes { WireFuzz.run($0) }
        }
        print("replayed \(files.count) inputs")
    }
}
#endif
