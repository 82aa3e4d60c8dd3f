import Foundation

/// `seconds` rounded to microseconds: a latency as it reads back from the cache (SQLite hands
/// reals back as 15-digit text), so a fresh result and its cached copy write the same bytes.
package func cachedLatency(_ seconds: Double) -> Double { (seconds * 1e6).rounded() / 1e6 }

/// A teacher call's result as the cache keeps it.
package struct CachedCall: Sendable, Equatable {
    /// The server's response body, exactly as received (already validated as a success).
    package var response: String
    /// Seconds the original call took, so re-runs report the same latency.
    package var latency: Double
}

/// The crash-safe store of finished teacher calls: SQLite in WAL mode with `synchronous=FULL`,
/// one row per call, each insert its own transaction, committed (and synced) before `store`
/// returns. A caller stores a result before it uses it, so a process killed at any instant
/// loses at most the calls still in flight, and a re-run finds every finished one.
///
/// The key is the canonical text of everything that determines the answer: the teacher's
/// identity (kind, base URL, endpoint), the model, the rendered request (messages or prompt,
/// tools) with its sampling settings and seed. It never contains the API key.
package final class CallCache: @unchecked Sendable {
    // @unchecked: the connection is only touched with `lock` held.
    private let connection: SQLiteConnection
    private let lock = NSLock()
    package let path: String
    package static let formatVersion = 1

    /// Opens or creates the cache at `path` (its directory must exist).
    package init(path: String) throws {
        self.path = path
        connection = try SQLiteConnection(path: path)
        let mode = try connection.query("PRAGMA journal_mode=WAL").first?.first ?? nil
        guard mode == "wal" else {
            throw SQLiteError(
                path: path, operation: "PRAGMA journal_mode=WAL",
                message: "the file system refused WAL mode (got \(mode ?? "nothing"))")
        }
        try connection.execute("PRAGMA synchronous=FULL")
        try connection.execute(
            """
            CREATE TABLE IF NOT EXISTS calls (
                key TEXT PRIMARY KEY NOT NULL,
                teacher TEXT NOT NULL,
                response TEXT NOT NULL,
                latency REAL NOT NULL,
                created REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
            INSERT OR IGNORE INTO meta VALUES ('format_version', '\(Self.formatVersion)');
            """)
        let version = try connection.query("SELECT value FROM meta WHERE name = 'format_version'").first?.first ?? nil
        guard version == String(Self.formatVersion) else {
            throw SQLiteError(
                path: path, operation: "open",
                message:
                    "cache format \(version ?? "?") is not \(Self.formatVersion), written by another distill version")
        }
    }

    /// The cached result for `key`, or nil.
    package func lookup(_ key: String) throws -> CachedCall? {
        lock.lock()
        defer { lock.unlock() }
        guard let row = try connection.query("SELECT response, latency FROM calls WHERE key = ?", [.text(key)]).first,
            let response = row[0], let latency = row[1].flatMap(Double.init)
        else { return nil }
        return CachedCall(response: response, latency: cachedLatency(latency))
    }

    /// Commits a successful result durably. Storing a key again replaces its row (only happens
    /// when a cached response no longer parses, e.g. after a format change).
    package func store(_ key: String, teacher: String, _ call: CachedCall) throws {
        lock.lock()
        defer { lock.unlock() }
        try connection.query(
            "INSERT OR REPLACE INTO calls (key, teacher, response, latency, created) VALUES (?, ?, ?, ?, ?)",
            [
                .text(key), .text(teacher), .text(call.response), .real(call.latency),
                .real(Date().timeIntervalSince1970),
            ])
    }

    /// How many calls are cached.
    package func count() throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        return Int(try connection.query("SELECT COUNT(*) FROM calls").first?.first.flatMap { $0 } ?? "0") ?? 0
    }
}
