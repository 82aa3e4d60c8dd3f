import Foundation
import JSON

/// Settings of the `openai` teacher: any OpenAI-compatible server (llama.cpp's server, vLLM,
/// Ollama, hosted APIs). Decoded from the recipe's `teacher` object; defaults as documented in
/// docs/teacher.md.
package struct OpenAITeacherConfig: Sendable, Equatable, Codable {
    package enum Endpoint: String, Sendable, Codable, CaseIterable {
        /// POST {base_url}/chat/completions with `messages` (and `tools`).
        case chat
        /// POST {base_url}/completions with `prompt`; tasks must have a plain `prompt`.
        case completions

        var path: String { self == .chat ? "chat/completions" : "completions" }
    }

    /// The API root, e.g. `http://127.0.0.1:8080/v1`.
    package var baseURL: String
    package var model: String
    package var endpoint: Endpoint = .chat
    /// The environment variable holding the API key (sent as `Authorization: Bearer`). The key
    /// itself is never written anywhere: not in outputs, the cache or error messages.
    package var apiKeyEnv: String? = nil
    /// Samples per task (k), each its own request with seed `seed + i` (llama.cpp's server
    /// refuses n > 1); 1...1000.
    package var samples: Int = 1
    package var seed: Int = 0
    /// 0...2; 0 is greedy on most servers.
    package var temperature: Double = 0.8
    /// (0, 1].
    package var topP: Double = 1.0
    /// >= 1.
    package var maxTokens: Int = 512
    /// Ask for token log-probabilities (kept in the cached response).
    package var logprobs: Bool = false
    /// Requests in flight at most; 1...256.
    package var concurrency: Int = 8
    /// Seconds one request may take, connection to last byte; > 0.
    package var timeoutSeconds: Double = 120
    /// Tries per call, the first included; 1...20.
    package var maxAttempts: Int = 6
    /// Backoff before retry n is min(max, base * 2^(n-1)) scaled by a random factor in [0.5, 1].
    package var backoffBaseSeconds: Double = 1
    package var backoffMaxSeconds: Double = 60
    /// A 429 asking to wait longer than this fails the call instead of sleeping.
    package var maxRetryAfterSeconds: Double = 600

    package init(baseURL: String, model: String) {
        self.baseURL = baseURL
        self.model = model
    }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case model, endpoint, samples, seed, temperature, logprobs, concurrency
        case baseURL = "base_url"
        case apiKeyEnv = "api_key_env"
        case topP = "top_p"
        case maxTokens = "max_tokens"
        case timeoutSeconds = "timeout_seconds"
        case maxAttempts = "max_attempts"
        case backoffBaseSeconds = "backoff_base_seconds"
        case backoffMaxSeconds = "backoff_max_seconds"
        case maxRetryAfterSeconds = "max_retry_after_seconds"
    }

    package init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self, in: "openai teacher", also: ["type"])
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = OpenAITeacherConfig(baseURL: "", model: "")
        baseURL = try c.decode(String.self, forKey: .baseURL)
        model = try c.decode(String.self, forKey: .model)
        endpoint = try c.decodeIfPresent(Endpoint.self, forKey: .endpoint) ?? d.endpoint
        apiKeyEnv = try c.decodeIfPresent(String.self, forKey: .apiKeyEnv)
        samples = try c.decodeIfPresent(Int.self, forKey: .samples) ?? d.samples
        seed = try c.decodeIfPresent(Int.self, forKey: .seed) ?? d.seed
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? d.temperature
        topP = try c.decodeIfPresent(Double.self, forKey: .topP) ?? d.topP
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? d.maxTokens
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs) ?? d.logprobs
        concurrency = try c.decodeIfPresent(Int.self, forKey: .concurrency) ?? d.concurrency
        timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? d.timeoutSeconds
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? d.maxAttempts
        backoffBaseSeconds = try c.decodeIfPresent(Double.self, forKey: .backoffBaseSeconds) ?? d.backoffBaseSeconds
        backoffMaxSeconds = try c.decodeIfPresent(Double.self, forKey: .backoffMaxSeconds) ?? d.backoffMaxSeconds
        maxRetryAfterSeconds =
            try c.decodeIfPresent(Double.self, forKey: .maxRetryAfterSeconds) ?? d.maxRetryAfterSeconds
    }

    /// Problems with the settings, each naming the key, the value and the accepted range.
    package func problems() -> [String] {
        var out: [String] = []
        if let url = URL(string: baseURL), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil
        {
        } else {
            out.append("base_url \"\(baseURL)\" is not an http(s) URL such as http://127.0.0.1:8080/v1")
        }
        if model.isEmpty { out.append("model must not be empty") }
        if !(1...1000).contains(samples) { out.append("samples must be within 1...1000, got \(samples)") }
        if seed < 0 { out.append("seed must be >= 0, got \(seed)") }
        if !(0...2).contains(temperature) { out.append("temperature must be within 0...2, got \(temperature)") }
        if !(topP > 0 && topP <= 1) { out.append("top_p must be within (0, 1], got \(topP)") }
        if maxTokens < 1 { out.append("max_tokens must be >= 1, got \(maxTokens)") }
        if !(1...256).contains(concurrency) { out.append("concurrency must be within 1...256, got \(concurrency)") }
        if !(timeoutSeconds > 0) { out.append("timeout_seconds must be > 0, got \(timeoutSeconds)") }
        if !(1...20).contains(maxAttempts) { out.append("max_attempts must be within 1...20, got \(maxAttempts)") }
        if !(backoffBaseSeconds >= 0 && backoffMaxSeconds >= backoffBaseSeconds) {
            out.append("backoff_base_seconds must be >= 0 and backoff_max_seconds >= it")
        }
        if !(maxRetryAfterSeconds >= 0) { out.append("max_retry_after_seconds must be >= 0") }
        if let env = apiKeyEnv, env.isEmpty { out.append("api_key_env must name an environment variable") }
        return out
    }

    /// The settings as they affect answers: part of every cache key.
    var identity: String { "openai \(baseURL) \(endpoint.path)" }
}
