// A tiny HTTP/1.1 server on 127.0.0.1 for the teacher tests: POSIX sockets, one thread per
// connection, one request per connection (`Connection: close`), and a script that decides
// for each request (by arrival index) whether to answer, stall, hang up or send garbage.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

final class ScriptedServer: @unchecked Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String
        /// The body as JSON (requests are JSON objects).
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    }

    enum Action: Sendable {
        case respond(status: Int, headers: [String: String], body: String)
        /// Waits, then closes without a byte of response.
        case stall(seconds: Double)
        /// Closes at once without a response.
        case hangUp
        /// Writes these bytes (not HTTP) and closes.
        case raw(String)
        /// A 200 response whose body is these bytes, valid UTF-8 or not.
        case respondBytes([UInt8])
        /// Sends a 200 head announcing `bytes` of body, then one byte every `interval` seconds.
        case trickle(bytes: Int, interval: Double)
    }

    typealias Script = @Sendable (_ index: Int, _ request: Request) -> Action

    private let lock = NSLock()
    private var _requests: [Request] = []
    private var inFlight = 0
    private var _maxInFlight = 0
    private let listener: Int32
    let port: Int
    private let script: Script
    /// Seconds each answered request is held before its response (to observe concurrency).
    let delay: Double

    var requests: [Request] { lock.withLock { _requests } }
    var maxInFlight: Int { lock.withLock { _maxInFlight } }
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    init(delay: Double = 0, script: @escaping Script) throws {
        self.script = script
        self.delay = delay
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        guard listener >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    private var stopped = false

    /// Stops accepting; connections in progress finish on their own threads. Idempotent:
    /// tests call it and `deinit` calls it again, and a second close of the listener's fd
    /// number would close whatever socket a concurrently running test has since been given
    /// under that number (seen as "Couldn't connect to server" in an unrelated test).
    func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    deinit { stop() }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            Thread { [self] in handle(fd) }.start()
        }
    }

    private func handle(_ fd: Int32) {
        defer { close(fd) }
        guard let request = readRequest(fd) else { return }
        let index: Int = lock.withLock {
            _requests.append(request)
            inFlight += 1
            _maxInFlight = max(_maxInFlight, inFlight)
            return _requests.count - 1
        }
        defer { lock.withLock { inFlight -= 1 } }
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        switch script(index, request) {
        case .respond(let status, let headers, let body):
            var head = "HTTP/1.1 \(status) \(status == 200 ? "OK" : "Status")\r\n"
            var all = headers
            all["Content-Type"] = all["Content-Type"] ?? "application/json"
            all["Content-Length"] = String(body.utf8.count)
            all["Connection"] = "close"
            for (k, v) in all.sorted(by: { $0.key < $1.key }) { head += "\(k): \(v)\r\n" }
            write(fd, head + "\r\n" + body)
        case .stall(let seconds):
            Thread.sleep(forTimeInterval: seconds)
        case .hangUp:
            break
        case .raw(let bytes):
            write(fd, bytes)
        case .respondBytes(let body):
            write(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n")
            writeBytes(fd, body)
        case .trickle(let count, let interval):
            write(
                fd,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(count)\r\nConnection: close\r\n\r\n"
            )
            for _ in 0..<count {
                Thread.sleep(forTimeInterval: interval)
                write(fd, " ")
            }
        }
        shutdown(fd, Int32(SHUT_WR))
    }

    private func write(_ fd: Int32, _ text: String) { writeBytes(fd, Array(text.utf8)) }

    private func writeBytes(_ fd: Int32, _ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    private func readRequest(_ fd: Int32) -> Request? {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        var contentLength = 0
        while true {
            if let end = headerEnd, buffer.count >= end + contentLength { break }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
            if headerEnd == nil, let r = findHeaderEnd(buffer) {
                headerEnd = r
                let head = String(decoding: buffer[0..<r], as: UTF8.self)
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    contentLength = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
        }
        let end = headerEnd!
        let lines = String(decoding: buffer[0..<end - 4], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        return Request(
            method: parts.count > 0 ? String(parts[0]) : "", path: parts.count > 1 ? String(parts[1]) : "",
            headers: headers, body: String(decoding: buffer[end..<end + contentLength], as: UTF8.self))
    }

    private func findHeaderEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
}

/// A chat completion response body answering `content`.
func chatResponse(_ content: String, promptTokens: Int = 10, completionTokens: Int = 5) -> String {
    let escaped = String(
        decoding: try! JSONSerialization.data(withJSONObject: [content], options: [.fragmentsAllowed]), as: UTF8.self
    )
    .dropFirst().dropLast()
    return """
        {"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":\(escaped)},\
        "finish_reason":"stop"}],"usage":{"prompt_tokens":\(promptTokens),"completion_tokens":\(completionTokens)}}
        """
}
