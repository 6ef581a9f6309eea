import MPI
import RankCheck

/// Memory that stays put while a nonblocking collective uses it (an
/// array's storage may move), with the array view the checks compare.
final class Buffer<Element: BitwiseCopyable> {
    let pointer: UnsafeMutableBufferPointer<Element>

    init(_ values: [Element]) {
        pointer = .allocate(capacity: max(values.count, 1))
        _ = pointer.initialize(from: values)
        count = values.count
    }

    convenience init(repeating value: Element, count: Int) {
        self.init(Array(repeating: value, count: count))
    }

    let count: Int

    deinit { pointer.deallocate() }

    var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(pointer.baseAddress!) }
    var input: UnsafeRawPointer { UnsafeRawPointer(pointer.baseAddress!) }
    var array: [Element] { Array(pointer[0..<count]) }
}

/// How a case runs its collective: the blocking call, or its start
/// followed by a wait (with a test first, to show it can be polled).
enum Mode: String, CaseIterable {
    case blocking, nonblocking
}

extension MPIRuntime {
    /// The blocking form, or the nonblocking one waited for.
    func run(_ mode: Mode, _ blocking: () throws(MPIError) -> Void, _ start: () throws(MPIError) -> Request) throws(MPIError) {
        switch mode {
        case .blocking: try blocking()
        case .nonblocking:
            let request = try start()
            if try test(request) == nil { _ = try wait(request) }
        }
    }
}

/// Element i of rank r's contribution (`salt` tells cases apart).
func value(_ rank: Int, _ index: Int, _ salt: Int = 0) -> Int64 { Int64(rank * 1000 + index % 997 + salt * 7) }

func values(_ rank: Int, _ count: Int, _ salt: Int = 0) -> [Int64] { (0..<count).map { value(rank, $0, salt) } }

/// 2x2 integer matrices (row-major), multiplied with wrapping: associative,
/// not commutative, so a reduction must combine them in rank order.
func multiply(_ a: [Int64], _ b: [Int64]) -> [Int64] {
    [a[0] &* b[0] &+ a[1] &* b[2], a[0] &* b[1] &+ a[1] &* b[3], a[2] &* b[0] &+ a[3] &* b[2], a[2] &* b[1] &+ a[3] &* b[3]]
}

func matrix(_ rank: Int, _ element: Int) -> [Int64] { [Int64(rank + 1), Int64(element % 5), Int64(rank % 3), 1] }

/// Displacements with a one-element gap after each block.
func gapped(_ counts: [Int]) -> [Int] {
    var next = 0
    return counts.map { count in
        defer { next += count + 1 }
        return next
    }
}

/// Runs `body`, which must fail with an error of `kind` whose message
/// contains `text`.
func expectError(_ what: String, _ kind: MPIError.Kind, containing text: String, _ body: () throws(MPIError) -> Void) {
    do {
        try body()
        fail("\(what) was accepted")
    } catch {
        check(error.kind == kind && error.message.contains(text), "\(what): \(error.kind) \(error.message)")
    }
}
