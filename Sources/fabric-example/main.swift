// Both sides of a connection, as the README shows them ("Using the API"):
//
//   fabric-example server [HOST]     listens on HOST (default: every interface)
//                                    and prints the address to give the client
//   fabric-example client ADDRESS    connects to that address
//
// The server publishes a region; the client SENDs a message, WRITEs into the
// region and READs it back, says how much it wrote, and leaves; the server
// sees it go. Both use the backend Fabric.openDefaultDevice chooses
// (FABRIC_BACKEND=tcp or verbs forces one); both need the same job secret.
import Fabric
import Glibc

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    let device = try Fabric.openDefaultDevice()
    switch (arguments.first ?? "", arguments.count) {
    case ("server", 1), ("server", 2):
        try serve(on: device, host: arguments.count == 2 ? arguments[1] : "0.0.0.0")
    case ("client", 2):
        try connectAndTalk(on: device, to: FabricAddress(parsing: arguments[1]))
    default:
        printError("usage: fabric-example server [HOST] | fabric-example client ADDRESS")
        exit(2)
    }
} catch {
    printError("fabric-example: \(error)")
    exit(1)
}

/// Accepts one client, lets it use a region, and returns once it has gone.
func serve<D: FabricDevice>(on device: D, host: String) throws(FabricError) {
    let domain = try device.allocateProtectionDomain()
    let completions = try device.createCompletionQueue(capacity: 64)
    let setup = QueuePairSetup<D>(protectionDomain: domain, sendCompletionQueue: completions, receiveCompletionQueue: completions)

    // The memory is the application's: it must outlive its registrations
    // and every request that uses them (the defers run last to first).
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 4096)
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: 8192)
    defer { memory.deallocate() }
    // Page 1, for the client to WRITE and READ: remote write needs local write too.
    let shared = try device.registerMemory(memory, length: 4096, access: [.localWrite, .remoteWrite, .remoteRead], in: domain)
    // Page 2 takes messages: receives need local write.
    let inbox = try device.registerMemory(memory + 4096, length: 4096, access: .localWrite, in: domain)
    defer {
        try? shared.deregister()
        try? inbox.deregister()
    }

    let listener = try device.listen(on: Endpoint(host: host, port: 0), backlog: 16)
    defer { listener.close() }
    print("address \(listener.address)")  // the client's one argument
    fflush(nil)  // stdout may be a pipe

    // Only a peer that proved the job secret becomes a request.
    guard let request = try listener.next(timeout: .seconds(60)) else {
        throw FabricError(.timedOut, "no client connected within 60 s")
    }
    // The region's address, remote key and length go back in the accept.
    var published: [UInt8] = []
    withUnsafeBytes(of: shared.remote().address.littleEndian) { published += $0 }
    withUnsafeBytes(of: shared.remoteKey.rawValue.littleEndian) { published += $0 }
    withUnsafeBytes(of: UInt32(shared.length).littleEndian) { published += $0 }
    // `prepare` posts receives before the client can send. With a loop in
    // it, the closure must say what it throws: `throws(FabricError)`.
    let queuePair = try request.accept(setup, privateData: published) { (qp) throws(FabricError) in
        for slot in 0..<3 {
            _ = try qp.postReceive(ReceiveWorkRequest(id: UInt64(slot), local: .single(inbox.element(offset: slot * 64, length: 64))))
        }
    }
    print("accepted a connection from \(request.peer)")

    // Receive 0: the client's message.
    let message = try nextCompletion(completions)
    try check(message)
    let text = String(decoding: UnsafeRawBufferPointer(start: inbox.address + Int(message.workRequestID) * 64, count: Int(message.byteLength)), as: UTF8.self)
    print("received \(message.byteLength) bytes in receive \(message.workRequestID): \(text)")
    // Receive 1: empty, its immediate value says how much the client wrote.
    // Its WRITE came first on the same queue pair, so its bytes are there.
    let note = try nextCompletion(completions)
    try check(note)
    let written = String(decoding: UnsafeRawBufferPointer(start: shared.address, count: Int(note.immediate)), as: UTF8.self)
    print("the client wrote \(note.immediate) bytes into the region: \(written)")

    // Receive 2 ends when the client leaves: flushed, the queue pair in error.
    let last = try nextCompletion(completions)
    guard last.status == .flushed else {
        throw FabricError(.invalidState, "receive 2 should end when the client leaves; it ended \(last)")
    }
    print("the client went away: receive \(last.workRequestID) \(last.status); the queue pair is in \(queuePair.state)")
    while let event = device.pollAsyncEvent() { print("event: \(event)") }
}

/// Connects to the server at `address`, then SENDs, WRITEs and READs.
func connectAndTalk<D: FabricDevice>(on device: D, to address: FabricAddress) throws(FabricError) {
    let domain = try device.allocateProtectionDomain()
    let completions = try device.createCompletionQueue(capacity: 64)
    let setup = QueuePairSetup<D>(protectionDomain: domain, sendCompletionQueue: completions, receiveCompletionQueue: completions)
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { memory.deallocate() }
    // SEND and WRITE read from it; READ results land in it (local write).
    let region = try device.registerMemory(memory, length: 4096, access: .localWrite, in: domain)
    defer { try? region.deregister() }

    // The server sends nothing: no receives to post in `prepare`.
    let (queuePair, published) = try device.connect(to: address, setup, options: ConnectOptions(timeout: .seconds(30))) { _ in }
    guard published.count == 16 else {
        throw FabricError(.protocolMismatch, "the server published \(published.count) bytes, not a region's 16")
    }
    let remote = published.withUnsafeBytes { bytes in
        RemoteMemory(
            address: UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self)),
            key: RemoteKey(rawValue: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))))
    }
    let remoteLength = published.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self))) }
    print("connected; the server's region has \(remoteLength) bytes")

    // SEND: lands in the receive the server posted first.
    let greeting = Array("hello from the client".utf8)
    memory.copyMemory(from: greeting, byteCount: greeting.count)
    _ = try queuePair.postSend(SendWorkRequest(id: 1, operation: .send, local: .single(region.element(offset: 0, length: greeting.count))))
    try check(try nextCompletion(completions))

    // WRITE into the server's region; the server's program takes no part.
    let text = Array("written by the client".utf8)
    guard text.count <= remoteLength else { throw FabricError(.limitExceeded, "the server's region is too small") }
    (memory + 1024).copyMemory(from: text, byteCount: text.count)
    _ = try queuePair.postSend(SendWorkRequest(id: 2, operation: .write(remote), local: .single(region.element(offset: 1024, length: text.count))))
    try check(try nextCompletion(completions))

    // READ it back into another part of our memory.
    _ = try queuePair.postSend(SendWorkRequest(id: 3, operation: .read(remote), local: .single(region.element(offset: 2048, length: text.count))))
    let read = try nextCompletion(completions)
    try check(read)
    print("read back: \(String(decoding: UnsafeRawBufferPointer(start: memory + 2048, count: Int(read.byteLength)), as: UTF8.self))")

    // An empty SEND whose immediate value tells the server what was written.
    _ = try queuePair.postSend(SendWorkRequest(id: 4, operation: .sendWithImmediate(UInt32(text.count)), local: .empty))
    try check(try nextCompletion(completions))
    queuePair.disconnect()
    print("disconnected")
}

/// The next completion; sleeps on the queue between polls, for 30 s at most.
func nextCompletion(_ queue: some FabricCompletionQueue) throws(FabricError) -> Completion {
    guard let completion = try queue.next(timeout: .seconds(30)) else {
        throw FabricError(.timedOut, "no completion within 30 s")
    }
    return completion
}

/// Prints a completion's fields; a failed request ends the program.
func check(_ completion: Completion) throws(FabricError) {
    guard completion.status == .success else {
        throw FabricError(.invalidState, "request \(completion.workRequestID) failed: \(completion)")
    }
    print("completion: request \(completion.workRequestID), \(completion.opcode), \(completion.byteLength) bytes, \(completion.status)")
}

/// Writes a line to standard error.
func printError(_ text: String) {
    var line = text + "\n"
    _ = line.withUTF8 { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
