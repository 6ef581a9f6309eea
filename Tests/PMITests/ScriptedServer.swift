import Foundation
import Glibc

/// The launcher's end of a socket pair, answering from a script: for each
/// request it reads (a PMI-1 line, or a PMI-2 frame after the init line),
/// it checks the request and sends the scripted reply. What it received is
/// kept for the test to check.
final class ScriptedServer: @unchecked Sendable {  // `received` and `failure` are read after `finished`
    enum Step {
        /// Reads a line, expects it to start with `prefix`, answers `reply` (raw bytes).
        case line(expect: String, reply: String)
        /// Reads a PMI-2 frame, expects its payload to start with `prefix`, answers with a frame.
        case frame(expect: String, reply: String)
        /// Reads a PMI-2 frame, expects its payload to start with `prefix`, answers raw bytes.
        case frameThenRaw(expect: String, send: String)
        /// Answers raw bytes without reading.
        case send(String)
        /// Stays silent for a while, its end still open.
        case pause(Duration)
        /// Closes its end.
        case close
    }

    let clientDescriptor: Int32
    private let serverDescriptor: Int32
    private(set) var received: [String] = []
    private(set) var failure: String?
    private let done = DispatchSemaphore(value: 0)

    init(_ steps: [Step]) {
        var pair: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        clientDescriptor = pair[0]
        serverDescriptor = pair[1]
        Thread.detachNewThread { [self] in
            run(steps)
            done.signal()
        }
    }

    /// Waits for the script to end; the failure, if any.
    func finished() -> String? {
        done.wait()
        return failure
    }

    private func run(_ steps: [Step]) {
        defer { Glibc.close(serverDescriptor) }
        for step in steps {
            switch step {
            case .line(let expect, let reply):
                guard let line = readLine() else { failure = "client closed before '\(expect)'"; return }
                received.append(line)
                guard line.hasPrefix(expect) else { failure = "expected '\(expect)...', got '\(line)'"; return }
                write(reply)
            case .frame(let expect, let reply):
                guard let header = read(6), let length = Int(header.trimmingCharacters(in: .whitespaces)), let payload = read(length) else {
                    failure = "no frame where '\(expect)' was due"; return
                }
                received.append(payload)
                guard payload.hasPrefix(expect) else { failure = "expected '\(expect)...', got '\(payload)'"; return }
                let count = String(reply.utf8.count)
                write(count + String(repeating: " ", count: 6 - count.count) + reply)
            case .frameThenRaw(let expect, let bytes):
                guard let header = read(6), let length = Int(header.trimmingCharacters(in: .whitespaces)), let payload = read(length) else {
                    failure = "no frame where '\(expect)' was due"; return
                }
                received.append(payload)
                guard payload.hasPrefix(expect) else { failure = "expected '\(expect)...', got '\(payload)'"; return }
                write(bytes)
            case .send(let bytes):
                write(bytes)
            case .pause(let duration):
                Thread.sleep(forTimeInterval: Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
            case .close:
                return
            }
        }
    }

    private func readLine() -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(serverDescriptor, &byte, 1) == 1 {
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
    }

    private func read(_ count: Int) -> String? {
        var bytes = [UInt8](repeating: 0, count: count)
        var have = 0
        while have < count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(serverDescriptor, $0.baseAddress! + have, count - have) }
            if n <= 0 { return nil }
            have += n
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(serverDescriptor, $0.baseAddress, $0.count) }
    }
}
