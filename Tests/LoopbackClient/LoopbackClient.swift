// A plain HTTP/1.1 client over a loopback socket, for the tests that start `distill serve`
// (in the test, or as a process): no HTTP library between the test and the bytes the server
// sends, so what is checked is what a client receives.

import Foundation

/// A connected socket to 127.0.0.1:`port` that has sent the request (HTTP/1.1, `Connection:
/// close`, a JSON `body`), for the caller to read from and close.
public func sendRequest(_ port: Int, _ method: String, _ path: String, body: String?, headers: [String: String] = [:]) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }
    var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for (k, v) in headers { request += "\(k): \(v)\r\n" }
    if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
    request += "\r\n" + (body ?? "")
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }  // the server may answer (413) before reading everything
        sent += n
    }
    return fd
}
