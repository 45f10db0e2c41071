// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Nestor",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "VMX", targets: ["VMX"]),
    ],
    targets: [
        // The architecture of Intel VMX as values: fields, encodings, MSRs, exit reasons, bitmaps.
        .target(name: "VMX", swiftSettings: strict),
        .testTarget(name: "VMXTests", dependencies: ["VMX"], resources: [.copy("Fixtures")]),
    ]
)
