import Glibc

/// One rank's standard output or error, read from its pipe and written to
/// mpirun's own in whole lines (so that ranks' lines never interleave
/// mid-line), each line tagged if asked.
final class OutputForwarder {
    let descriptor: Int32
    private let destination: Int32
    private let prefix: [UInt8]
    private var partial: [UInt8] = []
    private(set) var closed = false

    enum Tag { case none, openMPI, mpich }

    init(descriptor: Int32, rank: Int, isError: Bool, tag: Tag) {
        self.descriptor = descriptor
        destination = isError ? 2 : 1
        switch tag {
        case .none: prefix = []
        case .openMPI: prefix = Array("[1,\(rank)]<\(isError ? "stderr" : "stdout")>:".utf8)
        case .mpich: prefix = Array("[\(rank)] ".utf8)
        }
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
    }

    deinit { close() }

    /// Reads what the rank wrote and passes on its complete lines; at the
    /// end of the stream also the last unfinished one. False at the end.
    @discardableResult
    func forward() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !closed {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                partial.append(contentsOf: chunk[..<count])
                if let lastNewline = partial.lastIndex(of: UInt8(ascii: "\n")) {
                    emit(partial[...lastNewline])
                    partial.removeSubrange(...lastNewline)
                }
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return true }
            if !partial.isEmpty {
                emit(partial[...])
                partial.removeAll()
            }
            close()
        }
        return false
    }

    func close() {
        if !closed {
            closed = true
            _ = Glibc.close(descriptor)
        }
    }

    private func emit(_ text: ArraySlice<UInt8>) {
        var out: [UInt8]
        if prefix.isEmpty {
            out = Array(text)
        } else {
            out = []
            for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast(text.last == UInt8(ascii: "\n") ? 1 : 0) {
                out += prefix + line + [UInt8(ascii: "\n")]
            }
            if text.last != UInt8(ascii: "\n") && !out.isEmpty { out.removeLast() }
        }
        var offset = 0
        while offset < out.count {
            let written = out.withUnsafeBytes { write(destination, $0.baseAddress! + offset, $0.count - offset) }
            if written > 0 { offset += written } else if errno != EINTR && errno != EAGAIN { return }
        }
    }
}
