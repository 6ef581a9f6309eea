import FabricSupport
import Glibc
import Testing

/// The process's memory monitor alone: what it reports for watched memory,
/// what it refuses to watch.
@Suite(.serialized)
struct MemoryMonitorTests {
    let monitor = MemoryMonitor.shared
    let megabyte = 1 << 20

    private func map(_ length: Int) -> UnsafeMutableRawPointer {
        let pointer = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        precondition(pointer != MAP_FAILED)
        return pointer
    }

    /// The ranges a reader finds.
    private func ranges(_ reader: inout MemoryMonitor.Reader) -> [ClosedRange<UInt>] {
        var found: [ClosedRange<UInt>] = []
        #expect(reader.drain { start, end, _ in found.append(start...(end - 1)) } == .current)
        return found
    }

    @Test("munmap, partial munmap and MADV_DONTNEED of watched memory are reported by the time the call returns")
    func reportsChanges() throws {
        try #require(monitor.currentState == .watching, "userfaultfd is unavailable here")
        let pointer = map(megabyte)
        let start = UInt(bitPattern: pointer)
        #expect(monitor.watch(pointer, length: megabyte) == .watched)
        var reader = MemoryMonitor.follow()
        #expect(!reader.hasNews)
        let before = monitor.counters
        madvise(pointer, 4096, MADV_DONTNEED)
        #expect(ranges(&reader) == [start...(start + 4095)])
        munmap(pointer + megabyte - 8192, 8192)
        #expect(ranges(&reader) == [(start + UInt(megabyte) - 8192)...(start + UInt(megabyte) - 1)])
        munmap(pointer, megabyte - 8192)
        #expect(ranges(&reader) == [start...(start + UInt(megabyte) - 8192 - 1)])
        let after = monitor.counters
        #expect(after.unmaps - before.unmaps == 2 && after.removes - before.removes == 1 && after.pageFaults == 0)
    }

    @Test("memory nobody watches is not reported")
    func unwatchedIsQuiet() throws {
        try #require(monitor.currentState == .watching)
        var reader = MemoryMonitor.follow()
        let pointer = map(megabyte)
        munmap(pointer, megabyte)
        #expect(ranges(&reader).isEmpty)
    }

    @Test("a file mapping is refused, saying why")
    func fileBackedRefused() throws {
        try #require(monitor.currentState == .watching)
        var name = Array("/tmp/monitor-test-XXXXXX".utf8CString)
        let descriptor = mkstemp(&name)
        unlink(name)
        defer { close(descriptor) }
        ftruncate(descriptor, 65536)
        let pointer = mmap(nil, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)!
        defer { munmap(pointer, 65536) }
        guard case .refused(let reason) = monitor.watch(pointer, length: 65536) else {
            Issue.record("a file mapping was watched")
            return
        }
        #expect(reason.contains("file-backed"))
    }
}
