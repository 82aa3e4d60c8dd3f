// A small HTTP/1.1 server on SwiftNIO: keep-alive connections, request bodies up to a limit,
// replies whole or streamed (chunked), and a graceful stop that refuses new connections,
// closes idle ones and lets every request in flight finish. The routes are the caller's.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

package struct HTTPRequest: Sendable {
    package var method: String
    package var path: String
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    package init(method: String, path: String, headers: [(name: String, value: String)], body: [UInt8]) {
        (self.method, self.path, self.headers, self.body) = (method, path, headers, body)
    }

    /// The first value of header `name` (case-insensitive).
    package func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

package struct HTTPReply: Sendable {
    package var status: Int
    package var headers: [(String, String)]
    package var body: Body

    package enum Body: Sendable {
        case whole([UInt8])
        /// Written piece by piece as `produce` sends them; a failed send means the client left.
        case stream(@Sendable (_ send: @Sendable (String) async throws -> Void) async throws -> Void)
    }

    package init(status: Int, headers: [(String, String)] = [], body: Body) {
        (self.status, self.headers, self.body) = (status, headers, body)
    }

    package static func json(_ text: String, status: Int = 200, headers: [(String, String)] = []) -> HTTPReply {
        HTTPReply(status: status, headers: [("Content-Type", "application/json")] + headers, body: .whole(Array(text.utf8)))
    }
}

package final class HTTPServer: @unchecked Sendable {
    package typealias Handler = @Sendable (HTTPRequest) async -> HTTPReply

    private let channel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    private let handler: Handler
    private let maxBodyBytes: Int
    /// The port it listens on (the one asked for, or the one given for port 0).
    package let port: Int
    private let lock = NSLock()
    private var stopping = false
    /// Open connections and whether each is answering a request.
    private var connections: [ObjectIdentifier: (channel: any Channel, busy: Bool)] = [:]

    /// Binds `host:port` (throws when it cannot: the port is taken, say).
    package init(host: String, port: Int, maxBodyBytes: Int, handler: @escaping Handler) async throws {
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        self.port = channel.channel.localAddress?.port ?? port
        self.handler = handler
        self.maxBodyBytes = maxBodyBytes
    }

    /// Accepts connections until `stop()`, then returns once every connection has closed.
    package func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await channel.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await self.serve(connection) }
                }
            }
        }
    }

    /// Stops accepting, closes idle connections, and lets the requests in flight finish
    /// (their connections close after the reply).
    package func stop() {
        let idle: [any Channel] = lock.withLock {
            stopping = true
            return connections.values.filter { !$0.busy }.map(\.channel)
        }
        channel.channel.close(promise: nil)
        for c in idle { c.close(promise: nil) }
    }

    private func mark(_ channel: any Channel, busy: Bool?) -> Bool {
        lock.withLock {
            let key = ObjectIdentifier(channel)
            if let busy { connections[key] = (channel, busy) } else { connections[key] = nil }
            return stopping
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        let channel = connection.channel
        if mark(channel, busy: false) {
            try? await connection.executeThenClose { _, _ in }
            return
        }
        defer { _ = mark(channel, busy: nil) }
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body: [UInt8] = []
            var tooLarge = false
            for try await part in inbound {
                switch part {
                case .head(let h):
                    (head, body, tooLarge) = (h, [], false)
                    _ = mark(channel, busy: true)
                    if h.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                        try await outbound.write(.head(HTTPResponseHead(version: h.version, status: .continue)))
                    }
                case .body(let buffer):
                    if body.count + buffer.readableBytes > maxBodyBytes { tooLarge = true } else { body += buffer.readableBytesView }
                case .end:
                    guard let h = head else { continue }
                    let reply: HTTPReply
                    if tooLarge {
                        reply = .json(
                            #"{"error":{"message":"the request body is larger than the server's limit of \#(maxBodyBytes) bytes","type":"invalid_request_error","param":null,"code":"body_too_large"}}"#,
                            status: 413)
                    } else {
                        let request = HTTPRequest(
                            method: h.method.rawValue, path: String(h.uri.split(separator: "?", maxSplits: 1).first ?? ""),
                            headers: h.headers.map { ($0.name, $0.value) }, body: body)
                        // A client that hangs up cancels its request's task (a streamed reply
                        // notices at its next write; a whole one would run to its end unheard).
                        let task = Task { await handler(request) }
                        channel.closeFuture.whenComplete { _ in task.cancel() }
                        reply = await task.value
                    }
                    let stopping = lock.withLock { self.stopping }
                    let keepAlive = h.isKeepAlive && !tooLarge && !stopping
                    try await write(reply, version: h.version, keepAlive: keepAlive, to: outbound)
                    if !keepAlive || mark(channel, busy: false) { return }
                }
            }
        }
    }

    private func write(
        _ reply: HTTPReply, version: HTTPVersion, keepAlive: Bool, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        var headers = HTTPHeaders(reply.headers)
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        headers.replaceOrAdd(name: "Server", value: "distill")
        let status = HTTPResponseStatus(statusCode: reply.status)
        switch reply.body {
        case .whole(let bytes):
            headers.replaceOrAdd(name: "Content-Length", value: String(bytes.count))
            try await outbound.write(.head(HTTPResponseHead(version: version, status: status, headers: headers)))
            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: bytes))))
            try await outbound.write(.end(nil))
        case .stream(let produce):
            headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
            try await outbound.write(.head(HTTPResponseHead(version: version, status: status, headers: headers)))
            try await produce { text in try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text)))) }
            try await outbound.write(.end(nil))
        }
    }
}
