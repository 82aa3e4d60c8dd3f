// Continuous batching: one thread runs every decode step of the server. Each lane is one
// engine (a model, or a model with one adapter) with its own KV cache of `slots` sequences;
// a request takes one slot per choice. Each step of a lane runs, together, one token of
// every running sequence and up to `prefillBudget` prompt tokens of requests that have just
// joined (a long prompt is prefilled over several steps, so it never stalls the others for
// long); a request's first choice prefills its prompt once and the other choices copy that
// slot. A finished request's sequences keep their keys and values: a later prompt that
// starts with the same tokens (the next turn of a conversation, a shared system prompt or
// few-shot block) takes the slot holding the longest such prefix and prefills only the rest. A request joins at the next step after a slot is free and leaves the step it ends.
// Requests wait in a bounded queue; past it they are refused (the HTTP layer answers 503).
// Lanes take turns step by step, so requests of different adapters are batched per adapter.

import Core
import Foundation
import NN
import Platform
import Teacher
import TextData
import Verify

/// What one request asks for: `seeds.count` continuations of one prompt.
package struct GenerationJob: Sendable {
    package var prompt: [Int32]
    package var maxTokens: Int
    package var temperature: Double
    package var topP: Double
    /// One per choice: choice i draws from a generator seeded with seeds[i].
    package var seeds: [UInt64]
    /// Tokens that end a choice (the end of turn and of text); they are not part of its text.
    package var endTokens: Set<Int32>
    /// Text that ends a choice; the text is cut before it.
    package var stopStrings: [String] = []
    /// nil: no log-probabilities; k: the chosen token's and the k most likely ones'.
    package var topLogProbs: Int? = nil
    /// Constrained sampling: every choice is a sentence of this grammar (docs/teacher.md,
    /// *Constrained sampling*), and ends when the sentence does.
    package var grammar: ByteGrammar? = nil

    package init(
        prompt: [Int32], maxTokens: Int, temperature: Double, topP: Double, seeds: [UInt64], endTokens: Set<Int32>,
        stopStrings: [String] = [], topLogProbs: Int? = nil
    ) {
        (self.prompt, self.maxTokens, self.temperature, self.topP, self.seeds) = (prompt, maxTokens, temperature, topP, seeds)
        (self.endTokens, self.stopStrings, self.topLogProbs) = (endTokens, stopStrings, topLogProbs)
    }
}

/// One generated token as the API reports it.
package struct TokenReport: Sendable {
    package var id: Int32
    package var bytes: [UInt8]
    package var logProb: Double
    /// The most likely tokens at this step: id, bytes, log-probability.
    package var top: [(id: Int32, bytes: [UInt8], logProb: Double)]
}

package enum FinishReason: String, Sendable {
    case stop, length
}

/// What a request's stream carries, in order per choice: text (whole characters, held back
/// while it could still become a stop string) with the tokens that produced it, then the end.
package enum GenerationEvent: Sendable {
    /// The request has its sequences; `cachedTokens` of its prompt were already in the cache.
    case started(cachedTokens: Int)
    case text(choice: Int, String, tokens: [TokenReport])
    case finished(choice: Int, FinishReason, completionTokens: Int)
}

package enum SchedulerError: Error, Equatable {
    /// The queue holds `limit` waiting requests already.
    case queueFull(limit: Int)
    /// The server is shutting down.
    case stopping
}

package final class Scheduler: @unchecked Sendable {
    /// One engine and its cache.
    package final class Lane {
        package let name: String
        let engine: DecodeEngine
        let tokenizer: ByteLevelBPETokenizer
        let slots: Int
        let capacity: Int
        /// The cache, made at the lane's first request.
        private(set) lazy var state = DecodeState(engine: engine, slots: slots, capacity: capacity)
        let sampler: TokenSampler
        /// The vocabulary's trie, made at the lane's first constrained request.
        private(set) lazy var constrained = ConstrainedVocabulary(
            tokenizer, vocabulary: engine.config.vocabSize, stopTokens: [])
        /// Logits of a refused draw, masked.
        let masked: UnsafeMutablePointer<Float>
        var free: [Int]
        /// The tokens whose keys and values each slot holds (valid up to the slot's length):
        /// a free slot keeps its last request's, for a later prompt that starts the same way.
        var held: [[Int32]]
        var waiting: [Request] = []
        var active: [Request] = []

        package init(name: String, engine: DecodeEngine, tokenizer: ByteLevelBPETokenizer, slots: Int, capacity: Int) {
            (self.name, self.engine, self.tokenizer, self.slots, self.capacity) = (name, engine, tokenizer, slots, capacity)
            sampler = TokenSampler(vocabulary: engine.config.vocabSize)
            masked = .allocate(capacity: engine.config.vocabSize)
            free = Array((0..<slots).reversed())
            held = Array(repeating: [], count: slots)
        }

        deinit { masked.deallocate() }

        /// One constraint per choice of a constrained job, sharing their masks.
        func constraints(_ job: GenerationJob) -> [GrammarConstraint] {
            guard let grammar = job.grammar else { return [] }
            let masks = constrained.masks(for: grammar)
            return job.seeds.map { _ in GrammarConstraint(masks) }
        }

        /// A free slot for `prompt`: the one holding its longest prefix (at most all but its last
        /// token, which must run to give the first logits), else the one holding least. Takes it
        /// out of `free` and returns it with the reusable length.
        func takeSlot(for prompt: [Int32]) -> (slot: Int, reused: Int) {
            var best = (index: 0, reused: -1, held: Int.max)
            for (i, s) in free.enumerated() {
                let tokens = held[s].prefix(state.lengths[s])
                var common = 0
                let limit = min(tokens.count, prompt.count - 1)
                while common < limit && tokens[tokens.startIndex + common] == prompt[common] { common += 1 }
                if common > best.reused || (common == best.reused && tokens.count < best.held) {
                    best = (i, common, tokens.count)
                }
            }
            return (free.remove(at: best.index), max(0, best.reused))
        }

        /// Takes any free slot (for a request's further choices), the one holding least.
        func takeSlot() -> Int {
            let i = free.indices.min { state.lengths[free[$0]] < state.lengths[free[$1]] }!
            return free.remove(at: i)
        }

    }

    /// A request in a lane: its choices and where they are.
    final class Request {
        let job: GenerationJob
        let output: AsyncStream<GenerationEvent>.Continuation
        let cancelled = Locked(false)
        var slots: [Int] = []
        var prefilled = 0
        var choices: [Choice]
        /// Per choice under a grammar; empty without one.
        var constraints: [GrammarConstraint] = []

        init(job: GenerationJob, output: AsyncStream<GenerationEvent>.Continuation) {
            self.job = job
            self.output = output
            choices = job.seeds.map { Choice(rng: RNG(seed: $0)) }
        }

        var done: Bool { choices.allSatisfy(\.done) }
    }

    struct Choice {
        var rng: RNG
        var ids: [Int32] = []
        var generated = 0
        /// Unicode scalars of the text already sent.
        var shown = 0
        var pending: [TokenReport] = []
        var done = false
    }

    package let lanes: [String: Lane]
    private let order: [Lane]
    private let totalSlots: Int
    /// Requests that may wait for a slot, over all lanes.
    package let queueLimit: Int
    /// Prompt tokens one step prefills at most.
    package let prefillBudget: Int
    private let condition = NSCondition()
    private var incoming: [(Lane, Request)] = []
    private var waitingCount = 0
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    package init(lanes: [Lane], queueLimit: Int, prefillBudget: Int = DecodeState.chunk) {
        self.lanes = Dictionary(uniqueKeysWithValues: lanes.map { ($0.name, $0) })
        order = lanes
        totalSlots = lanes.map(\.slots).reduce(0, +)
        self.queueLimit = queueLimit
        self.prefillBudget = prefillBudget
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "distill-scheduler"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Queues `job` on lane `lane`; the stream ends after every choice has finished, or at
    /// once when the consumer stops listening (the request is then dropped at the next step).
    package func submit(_ job: GenerationJob, lane name: String) throws -> AsyncStream<GenerationEvent> {
        guard let lane = lanes[name] else { preconditionFailure("no lane \(name)") }
        precondition(!job.seeds.isEmpty && job.seeds.count <= lane.slots, "\(job.seeds.count) choices for \(lane.slots) slots")
        precondition(!job.prompt.isEmpty && job.prompt.count + job.maxTokens <= lane.capacity, "the request does not fit a slot")
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream(bufferingPolicy: .unbounded)
        let request = Request(job: job, output: continuation)
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw SchedulerError.stopping }
        // Requests beyond what the lanes run at once wait, `queueLimit` of them at most.
        if waitingCount + runningCount >= queueLimit + totalSlots { throw SchedulerError.queueFull(limit: queueLimit) }
        waitingCount += 1
        incoming.append((lane, request))
        let flag = request.cancelled
        continuation.onTermination = { reason in
            if case .cancelled = reason { flag.value = true }
        }
        condition.signal()
        return stream
    }

    /// Requests waiting for a slot and running, over all lanes.
    package var load: (waiting: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (waitingCount, runningCount)
    }
    private var runningCount = 0

    /// Requests dropped before they finished because nobody was listening any more.
    package var abandoned: Int { condition.withLock { abandonedCount } }
    private var abandonedCount = 0

    /// While paused no step runs: requests queue (and are refused past the limit) but none
    /// starts. For tests that need a full queue to stay full.
    package var paused: Bool {
        get { condition.withLock { isPaused } }
        set {
            condition.withLock {
                isPaused = newValue
                condition.signal()
            }
        }
    }
    private var isPaused = false

    /// Refuses new requests, lets the queued and running ones finish, and stops the thread.
    package func shutdown() {
        condition.lock()
        let wasStopping = stopping
        stopping = true
        isPaused = false
        condition.signal()
        condition.unlock()
        if !wasStopping { finished.wait() }
    }

    private func loop() {
        while true {
            condition.lock()
            while isPaused || (incoming.isEmpty && !stopping && !order.contains(where: { !$0.active.isEmpty || !$0.waiting.isEmpty })) {
                condition.wait()
            }
            for (lane, request) in incoming { lane.waiting.append(request) }
            incoming.removeAll()
            let idle = !order.contains(where: { !$0.active.isEmpty || !$0.waiting.isEmpty })
            condition.unlock()
            if idle && stopping { break }
            for lane in order where !lane.active.isEmpty || !lane.waiting.isEmpty { step(lane) }
        }
        finished.signal()
    }

    private func count(waiting: Int, running: Int, abandoned: Int = 0) {
        condition.lock()
        waitingCount += waiting
        runningCount += running
        abandonedCount += abandoned
        condition.unlock()
    }

    /// One step of `lane`: drop cancelled requests, admit waiting ones, run the tokens, pick.
    private func step(_ lane: Lane) {
        let queued = lane.waiting.count
        lane.waiting.removeAll { $0.cancelled.value }
        let gone = queued - lane.waiting.count
        var left = 0
        for request in lane.active where request.cancelled.value {
            release(request, from: lane)
            left += 1
        }
        lane.active.removeAll { $0.cancelled.value }
        var joined = 0
        while let next = lane.waiting.first, next.choices.count <= lane.free.count {
            lane.waiting.removeFirst()
            // The first choice prefills the prompt, from the longest prefix a free slot holds.
            let (first, reused) = lane.takeSlot(for: next.job.prompt)
            lane.state.truncate(slot: first, to: reused)
            next.prefilled = reused
            next.slots = [first] + (1..<next.choices.count).map { _ in lane.takeSlot() }
            next.constraints = lane.constraints(next.job)
            lane.held[first] = next.job.prompt
            next.output.yield(.started(cachedTokens: reused))
            lane.active.append(next)
            joined += 1
        }
        count(waiting: lane.waiting.count - queued, running: joined - left, abandoned: gone + left)
        guard !lane.active.isEmpty else { return }

        // The tokens of this step and the rows of logits they give.
        var ids: [Int32] = [], slots: [Int] = [], outputs: [Int] = []
        var readers: [(request: Request, choice: Int?)] = []  // nil: every choice (a finished prefill)
        var budget = prefillBudget
        for request in lane.active {
            if request.prefilled < request.job.prompt.count {
                guard budget > 0 else { continue }
                let take = min(budget, request.job.prompt.count - request.prefilled)
                ids += request.job.prompt[request.prefilled..<(request.prefilled + take)]
                slots += Array(repeating: request.slots[0], count: take)
                request.prefilled += take
                budget -= take
                if request.prefilled == request.job.prompt.count {
                    outputs.append(ids.count - 1)
                    readers.append((request, nil))
                }
                continue
            }
            for (i, choice) in request.choices.enumerated() where !choice.done {
                ids.append(choice.ids.last ?? request.job.prompt.last!)
                slots.append(request.slots[i])
                outputs.append(ids.count - 1)
                readers.append((request, i))
            }
        }
        guard !ids.isEmpty else { return }
        let logits = lane.state.step(ids: ids, slots: slots, outputs: outputs)
        let v = lane.engine.config.vocabSize
        for (row, reader) in readers.enumerated() {
            let request = reader.request
            if let i = reader.choice {
                pick(request, choice: i, logits + row * v, lane)
            } else {
                for s in request.slots.dropFirst() { lane.state.copy(slot: request.slots[0], to: s) }
                for i in request.choices.indices { pick(request, choice: i, logits + row * v, lane) }
            }
        }
        // The counts drop before the streams end: a client that has its answer may send the
        // next request at once, and must find the room this one leaves.
        let ended = lane.active.filter(\.done)
        guard !ended.isEmpty else { return }
        for request in ended { release(request, from: lane) }
        lane.active.removeAll(where: \.done)
        count(waiting: 0, running: -ended.count)
        for request in ended { request.output.finish() }
    }

    /// Frees the request's slots, each keeping what it holds for a later prompt.
    private func release(_ request: Request, from lane: Lane) {
        for (i, s) in request.slots.enumerated() {
            lane.held[s] = request.job.prompt + (i < request.choices.count ? request.choices[i].ids : [])
        }
        lane.free += request.slots
        request.slots = []
    }

    /// Chooses choice `i`'s next token from `row` and reports what it adds.
    private func pick(_ request: Request, choice i: Int, _ row: UnsafeMutablePointer<Float>, _ lane: Lane) {
        let job = request.job
        let v = lane.engine.config.vocabSize
        let sampling = SamplingConfig(maxTokens: job.maxTokens, temperature: job.temperature, topK: 0, topP: job.topP)
        // Under a grammar a refused draw is drawn again from the allowed tokens; a choice with
        // nothing allowed, or whose sentence is whole, stops.
        let constraint = request.constraints.isEmpty ? nil : request.constraints[i]
        guard let token = lane.sampler.pick(row, sampling, &request.choices[i].rng, constraint: constraint, scratch: lane.masked)
        else {
            finish(request, choice: i, .stop, lane, text: lane.tokenizer.decode(request.choices[i].ids))
            return
        }
        request.choices[i].generated += 1
        if let k = job.topLogProbs {
            let top = topLogProbabilities(row, v, count: k).map { (id: $0.id, bytes: lane.tokenizer.bytes(of: $0.id), logProb: $0.logProb) }
            request.choices[i].pending.append(
                TokenReport(id: token, bytes: lane.tokenizer.bytes(of: token), logProb: logProbability(row, v, token), top: top))
        }
        if job.endTokens.contains(token) {
            finish(request, choice: i, .stop, lane, text: lane.tokenizer.decode(request.choices[i].ids))
            return
        }
        request.choices[i].ids.append(token)
        let text = lane.tokenizer.decode(request.choices[i].ids)
        if constraint?.isFinished == true {
            finish(request, choice: i, .stop, lane, text: text)
            return
        }
        if let cut = job.stopStrings.compactMap({ text.range(of: $0)?.lowerBound }).min() {
            finish(request, choice: i, .stop, lane, text: String(text[..<cut]))
            return
        }
        if request.choices[i].generated >= job.maxTokens {
            finish(request, choice: i, .length, lane, text: text)
            return
        }
        // Hold back a character still incomplete and any ending that could grow into a stop string.
        var scalars = Array(text.unicodeScalars)
        if scalars.last == "\u{FFFD}" { scalars.removeLast() }
        var held = 0
        for stop in job.stopStrings {
            let s = Array(stop.unicodeScalars)
            for length in stride(from: min(s.count - 1, scalars.count), to: held, by: -1)
            where Array(scalars[(scalars.count - length)...]) == Array(s[..<length]) {
                held = length
                break
            }
        }
        let upTo = scalars.count - held
        emit(request, choice: i, scalars: scalars, upTo: upTo)
    }

    private func emit(_ request: Request, choice i: Int, scalars: [Unicode.Scalar], upTo: Int) {
        let shown = request.choices[i].shown
        let delta = upTo > shown ? String(String.UnicodeScalarView(scalars[shown..<upTo])) : ""
        guard !delta.isEmpty || !request.choices[i].pending.isEmpty else { return }
        request.output.yield(.text(choice: i, delta, tokens: request.choices[i].pending))
        request.choices[i].pending = []
        request.choices[i].shown = max(shown, upTo)
    }

    private func finish(_ request: Request, choice i: Int, _ reason: FinishReason, _ lane: Lane, text: String) {
        let scalars = Array(text.unicodeScalars)
        emit(request, choice: i, scalars: scalars, upTo: scalars.count)
        request.choices[i].done = true
        request.output.yield(.finished(choice: i, reason, completionTokens: request.choices[i].generated))
    }
}
