// Recipe: the Codable recipe schema, its validation, and the runner that wires stages
// together. The only place stages are wired. Layer 3: imports everything below.
