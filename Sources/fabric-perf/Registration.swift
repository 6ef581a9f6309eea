import ArgumentParser
import Fabric
import Foundation
import Glibc

/// What registering memory costs: the time to register and to deregister
/// fresh memory of each size (pages never touched by a device before, as a
/// registration cache's misses are), per call and per MiB.
struct Registration: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cost of registering and deregistering memory on the chosen backend (FABRIC_BACKEND), per call and per MiB.")

    @Option(help: "Region sizes, comma-separated (suffixes K, M; at most 1 GiB).")
    var sizes = "4K,64K,1M,16M,64M"

    @Option(name: .customLong("reps"), help: "Registrations per size (at least 1).")
    var repetitions = 10

    @Flag(help: "Print one JSON object per size instead of a table.")
    var json = false

    struct Cost: Codable {
        var backend: String
        var device: String
        var size: Int
        var registerMedianMicroseconds: Double
        var registerMicrosecondsPerMiB: Double
        var deregisterMedianMicroseconds: Double
        var repetitions: Int
    }

    func run() throws {
        let sizeList = try parseSizeList(sizes, maximum: 1 << 30, maximumText: "1 GiB")
        guard repetitions >= 1 else { throw ValidationError("--reps must be at least 1") }
        let device = try Fabric.openDefaultDevice()
        let costs = try measure(device, sizes: sizeList)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            for cost in costs { print(String(decoding: try encoder.encode(cost), as: UTF8.self)) }
            return
        }
        print("registration on \(device.backendName) device \(device.name): medians of \(repetitions) fresh regions per size; load average \(loadAverage())")
        print("size      register-us  us-per-MiB  deregister-us")
        for cost in costs {
            print(formatSize(cost.size).padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: "%11.1f  %10.1f  %13.1f", cost.registerMedianMicroseconds, cost.registerMicrosecondsPerMiB, cost.deregisterMedianMicroseconds))
        }
    }

    private func measure<D: FabricDevice>(_ device: D, sizes: [Int]) throws -> [Cost] {
        let domain = try device.allocateProtectionDomain()
        var costs: [Cost] = []
        for size in sizes {
            var register = Samples()
            var deregister = Samples()
            for _ in 0..<repetitions {
                let memory = try freshMemory(size)
                defer { munmap(memory, size) }
                let start = now()
                let region = try device.registerMemory(memory, length: size, access: .all, in: domain)
                let registered = now()
                try region.deregister()
                let done = now()
                register.append(Double(registered - start) / 1000)
                deregister.append(Double(done - registered) / 1000)
            }
            costs.append(Cost(
                backend: device.backendName, device: device.name, size: size,
                registerMedianMicroseconds: register.median,
                registerMicrosecondsPerMiB: register.median / (Double(size) / Double(1 << 20)),
                deregisterMedianMicroseconds: deregister.median, repetitions: repetitions))
        }
        return costs
    }
}

/// Fresh anonymous memory of `size` bytes, touched so that registering it
/// measures the device's work rather than page faults (what a registration
/// cache's misses meet). The caller unmaps it.
func freshMemory(_ size: Int) throws -> UnsafeMutableRawPointer {
    guard let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else {
        throw PerfError("mmap of \(size) bytes failed")
    }
    memset(memory, 1, size)
    return memory
}
