import FabricSupport
import Testing

/// The tie-break of crossing connects, played out on two tables as two
/// devices would, in every order the messages can take.
@Suite("the tie-break of crossing connects")
struct ConnectionTagsTests {
    @Test("connects that cross: the one of the lower instance wins on both sides, in either order of arrival")
    func crossing() {
        for lowerFirst in [true, false] {
            var low = ConnectionTags(ownInstance: 10)
            var high = ConnectionTags(ownInstance: 20)
            let lowOut = low.beginOutgoing(tag: 7)
            let highOut = high.beginOutgoing(tag: 7)
            // Before its connect knows whom it reached, a listener waits.
            #expect(low.decide(incomingTag: 7, from: 20) == .wait)
            #expect(high.decide(incomingTag: 7, from: 10) == .wait)
            // The challenges reveal the peers (in either order).
            if lowerFirst {
                #expect(low.outgoing(lowOut, reached: 20) == .proceed)
                #expect(high.outgoing(highOut, reached: 10) == .proceed)
            } else {
                #expect(high.outgoing(highOut, reached: 10) == .proceed)
                #expect(low.outgoing(lowOut, reached: 20) == .proceed)
            }
            // The lower device refuses the higher one's request; the higher
            // device lets the lower one's through.
            #expect(low.decide(incomingTag: 7, from: 20) == .refuse)
            #expect(high.decide(incomingTag: 7, from: 10) == .deliver)
        }
    }

    @Test("a request that arrives after our connect completed is refused, whatever the order of instances")
    func afterConnected() {
        var high = ConnectionTags(ownInstance: 20)
        let out = high.beginOutgoing(tag: 3)
        #expect(high.outgoing(out, reached: 10) == .proceed)
        high.outgoingConnected(out)
        #expect(high.decide(incomingTag: 3, from: 10) == .refuse)
        // Once that queue pair is gone, the tag is free again.
        high.remove(out)
        #expect(high.decide(incomingTag: 3, from: 10) == .deliver)
    }

    @Test("a connect that finds the peer's request already handed to the application gives way")
    func afterDelivered() {
        var low = ConnectionTags(ownInstance: 10)
        #expect(low.decide(incomingTag: 4, from: 20) == .deliver)
        let record = low.delivered(incomingTag: 4, from: 20)
        let out = low.beginOutgoing(tag: 4)
        #expect(low.outgoing(out, reached: 20) == .yield)
        low.remove(record)
        low.remove(out)
        #expect(low.count == 0)
    }

    @Test("other tags, other peers, no crossing and connecting to oneself make separate queue pairs")
    func noCrossing() {
        var table = ConnectionTags(ownInstance: 10)
        let out = table.beginOutgoing(tag: 1)
        #expect(table.outgoing(out, reached: 30) == .proceed)
        #expect(table.decide(incomingTag: 1, from: 20) == .deliver)  // another peer
        #expect(table.decide(incomingTag: 2, from: 30) == .deliver)  // another tag
        // Two connects of ours to the same peer with the same tag.
        let second = table.beginOutgoing(tag: 1)
        #expect(table.outgoing(second, reached: 30) == .proceed)
        // Ourselves: never a crossing.
        let own = table.beginOutgoing(tag: 9)
        #expect(table.outgoing(own, reached: 10) == .proceed)
        #expect(table.decide(incomingTag: 9, from: 10) == .deliver)
        #expect(table.delivered(incomingTag: 9, from: 10) > 0)
        let again = table.beginOutgoing(tag: 9)
        #expect(table.outgoing(again, reached: 10) == .proceed)
    }
}
