import Glibc

/// A joinable thread of the system running one closure: the tcp device's
/// progress thread, the verbs device's connection event thread. (Not a
/// Foundation Thread: the backends start it before anything else and join
/// it when their device goes, with no run loop.)
@_spi(FabricInternals) public struct SystemThread: @unchecked Sendable {  // pthread_t is an integer handle
    private let handle: pthread_t

    private final class Start {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread, or says why pthread_create refused.
    public static func start(_ body: @escaping () -> Void) -> Result<SystemThread, SystemThreadFailure> {
        let context = Unmanaged.passRetained(Start(body)).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, nil, { raw in
            Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            return .failure(SystemThreadFailure(code: status))
        }
        return .success(SystemThread(handle: handle))
    }

    /// Waits for the thread to end.
    public func join() {
        _ = pthread_join(handle, nil)
    }
}

/// Why a thread did not start: pthread_create's error code.
@_spi(FabricInternals) public struct SystemThreadFailure: Error {
    public let code: Int32
    public var text: String { String(cString: strerror(code)) }
}
