import Foundation
import Hummingbird

/// JSON the way every endpoint and every WebSocket event writes it: snake_case keys (a
/// property `modelID` is written `model_id`; dictionary keys, such as model ids, as they are),
/// RFC 3339 UTC dates, sorted keys. The request context hands it to hummingbird, so a handler
/// returns a ``ResponseEncodable`` value and never builds a body by hand.
enum SidecarJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

extension ResponseEncodable {
    /// This value sent with another status than 200.
    func with(status: HTTPResponse.Status) -> EditedResponse<Self> { EditedResponse(status: status, response: self) }
}

/// An optional written as `null` when absent (synthesized `Encodable` leaves nil keys out, and
/// the Model Availability API's clients expect every key).
struct Nullable<Wrapped: Encodable>: Encodable {
    let value: Wrapped?

    init(_ value: Wrapped?) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

extension Nullable: Sendable where Wrapped: Sendable {}
