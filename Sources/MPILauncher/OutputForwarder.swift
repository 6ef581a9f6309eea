import Glibc

/// One rank's standard output or error, read from its pipe and passed on
/// in whole lines (so that ranks' lines never interleave mid-line): to
/// mpirun's own output on the rank's host, or up the channel from a proxy.
final class OutputForwarder {
    let descriptor: Int32
    let rank: Int
    let isError: Bool
    private let sink: (Int, Bool, ArraySlice<UInt8>) -> Void
    private var partial: [UInt8] = []
    private(set) var closed = false

    init(descriptor: Int32, rank: Int, isError: Bool, sink: @escaping (_ rank: Int, _ isError: Bool, _ lines: ArraySlice<UInt8>) -> Void) {
        self.descriptor = descriptor
        self.rank = rank
        self.isError = isError
        self.sink = sink
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
                } else if partial.count >= ProxyMessage.outputChunk {
                    // A very long line goes on in pieces.
                    emit(partial[...])
                    partial.removeAll()
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
        var start = text.startIndex
        while start < text.endIndex {
            let end = min(start + ProxyMessage.outputChunk, text.endIndex)
            sink(rank, isError, text[start..<end])
            start = end
        }
    }
}

/// Writes ranks' output lines to mpirun's standard output and error, with
/// the tag the command line asked for.
struct OutputWriter {
    enum Tag { case none, openMPI, mpich }
    let tag: Tag

    func write(rank: Int, isError: Bool, _ text: ArraySlice<UInt8>) {
        let prefix: [UInt8]
        switch tag {
        case .none: prefix = []
        case .openMPI: prefix = Array("[1,\(rank)]<\(isError ? "stderr" : "stdout")>:".utf8)
        case .mpich: prefix = Array("[\(rank)] ".utf8)
        }
        var out: [UInt8]
        if prefix.isEmpty {
            out = Array(text)
        } else {
            out = []
            var lineStart = text.startIndex
            while lineStart < text.endIndex {
                let newline = text[lineStart...].firstIndex(of: UInt8(ascii: "\n"))
                let lineEnd = newline.map { $0 + 1 } ?? text.endIndex
                out += prefix + text[lineStart..<lineEnd]
                lineStart = lineEnd
            }
        }
        let destination: Int32 = isError ? 2 : 1
        var offset = 0
        while offset < out.count {
            let written = out.withUnsafeBytes { Glibc.write(destination, $0.baseAddress! + offset, $0.count - offset) }
            if written > 0 { offset += written } else if errno != EINTR && errno != EAGAIN { return }
        }
    }
}
