import Glibc
import MPILauncher
import PMI

/// Entry points for the bootstrap's fuzz targets: what reads a launcher's
/// or a rank's bytes. `pmi1` and `pmi2` feed the wire formats (a message
/// that reads must write and read back the same) and the launcher's PMI
/// server (which must report the rank, never crash or hang); `proxy` feeds
/// mpirun's proxy channel format.
public enum BootstrapFuzzing {
    /// PMI-1 lines: each line decoded; a decoded one encoded and decoded
    /// again must be equal. Then the whole input to a server connection.
    public static func feedPMI1(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            guard let message = try? PMI1Message(decoding: line), let encoded = try? message.encoded() else { continue }
            guard let again = try? PMI1Message(decoding: encoded.dropLast()), again == message else {
                fatalError("PMI-1 line '\(String(decoding: line, as: UTF8.self))' does not read back as written")
            }
        }
        feedServer(bytes)
    }

    /// PMI-2: a length field and payload per message; each decoded payload
    /// must write and read back the same. Then the input (after an init
    /// line that chooses PMI-2) to a server connection.
    public static func feedPMI2(_ input: UnsafeRawBufferPointer) {
        var bytes = Array(input)[...]
        while bytes.count >= PMI2Message.lengthFieldSize {
            guard let length = try? PMI2Message.payloadLength(decoding: bytes.prefix(PMI2Message.lengthFieldSize)) else { break }
            bytes = bytes.dropFirst(PMI2Message.lengthFieldSize)
            let payload = bytes.prefix(length)
            bytes = bytes.dropFirst(length)
            guard let message = try? PMI2Message(decodingPayload: payload), let encoded = try? message.encoded() else { continue }
            guard let again = try? PMI2Message(decodingPayload: encoded.dropFirst(PMI2Message.lengthFieldSize)), again == message else {
                fatalError("PMI-2 payload '\(String(decoding: payload, as: UTF8.self))' does not read back as written")
            }
        }
        feedServer(Array("cmd=init pmi_version=2 pmi_subversion=0\n".utf8) + Array(input))
    }

    /// mpirun's proxy channel: each line parsed; a parsed message written
    /// and parsed again must be equal.
    public static func feedProxy(_ input: UnsafeRawBufferPointer) {
        ProxyChannelFuzzing.feed(Array(input))
    }

    /// The launcher's PMI server reading `bytes` from a rank that then
    /// closes its end: every outcome is a reply or a named failure.
    static func feedServer(_ bytes: [UInt8]) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return }
        // Large inputs need the other end drained; the fuzzer keeps them small.
        _ = bytes.withUnsafeBytes { send(pair[0], $0.baseAddress, min($0.count, 100_000), Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        shutdown(pair[0], Int32(SHUT_WR))
        let context = PMIServerContext(keyValueSpace: "fuzz", size: 2, applicationNumbers: [0, 0], processMapping: "(vector,(0,1,2))")
        let server = PMIServer(context: context, ranks: [(0, pair[1])])
        var rounds = 0
        while rounds < 64, !server.pollDescriptors.isEmpty {
            rounds += 1
            for entry in server.pollDescriptors {
                for event in server.handle(descriptor: entry.fd, revents: Int16(POLLIN)) {
                    if case .fenceReady(let puts) = event { server.completeFence(with: puts) }
                }
            }
        }
        server.closeAll()
        close(pair[0])
    }

    public static func seedsPMI1() -> [[UInt8]] {
        [
            "cmd=init pmi_version=1 pmi_subversion=1\ncmd=get_maxes\ncmd=get_my_kvsname\ncmd=put kvsname=fuzz key=a value=1\ncmd=barrier_in\ncmd=get kvsname=fuzz key=a\ncmd=finalize\n",
            "cmd=init pmi_version=1 pmi_subversion=1\ncmd=get kvsname=fuzz key=PMI_process_mapping\ncmd=abort exitcode=3\n",
            "cmd=get_result rc=-1 msg=key addr-9 not found value=unknown\n",
        ].map { Array($0.utf8) }
    }

    public static func seedsPMI2() -> [[UInt8]] {
        func frame(_ payload: String) -> String {
            let digits = String(payload.utf8.count)
            return digits + String(repeating: " ", count: 6 - digits.count) + payload
        }
        return [
            frame("cmd=fullinit;pmirank=0;threaded=FALSE;") + frame("cmd=job-getid;") + frame("cmd=kvs-put;key=a;value=1;")
                + frame("cmd=kvs-fence;") + frame("cmd=kvs-get;jobid=fuzz;srcid=-1;key=a;") + frame("cmd=finalize;"),
            frame("cmd=info-getjobattr;key=PMI_process_mapping;") + frame("cmd=abort;isworld=TRUE;msg=why;"),
            "   113cmd=kvs-get-response;rc=0;found=TRUE;value=fabric1/tcp/2/7471/10.0.0.2/9f2c1a0b3c4d5e6f;",
        ].map { Array($0.utf8) }
    }

    public static func seedsProxy() -> [[UInt8]] { ProxyChannelFuzzing.seeds() }
}
