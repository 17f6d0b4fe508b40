import Foundation
import Hummingbird

/// A value JSONSerialization parsed, handed to the blocking pool: its dictionaries, arrays,
/// strings and numbers are immutable Foundation values, never changed once parsed.
struct ParsedJSON<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Reads JSON request bodies the same way on every endpoint: a body not sent as
/// `application/json` is 415 (a web page's form or `text/plain` POST, which a browser sends
/// without asking first, never acts); a body that is not a JSON object is 400 `BAD_REQUEST`; a
/// missing or wrong-typed field is 422 `VALIDATION_ERROR` naming it.
enum RequestBody {
    /// Bodies larger than this are refused (every request of the API is a few fields).
    static let maxBytes = 1 << 20

    /// The body as a JSON object; `emptyMeans` stands in for an empty body (nil: an empty body is an error).
    static func object(from request: Request, emptyMeans empty: String? = nil) async throws -> (data: Data, object: [String: Any]) {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBytes)
        } catch {
            throw APIError(.contentTooLarge, code: "BAD_REQUEST", message: "the body is larger than \(maxBytes) bytes")
        }
        var data = Data(buffer: buffer)
        let blank = data.allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        if !blank || request.headers[.contentType] != nil { try requireJSON(request.headers[.contentType]) }
        if blank, let empty { data = Data(empty.utf8) }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw APIError(.badRequest, code: "BAD_REQUEST", message: "the body must be a JSON object")
        }
        return (data, object)
    }

    /// 415 unless `contentType` is `application/json` (parameters such as `charset` allowed)
    /// or another `+json` type.
    static func requireJSON(_ contentType: String?) throws {
        let media = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard let media, media == "application/json" || (media.hasPrefix("application/") && media.hasSuffix("+json")) else {
            throw APIError(.unsupportedMediaType, code: "UNSUPPORTED_MEDIA_TYPE",
                           message: "the body must be sent as Content-Type: application/json, not \(contentType.map { "'\($0)'" } ?? "without a Content-Type")")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from request: Request, emptyMeans empty: String? = nil) async throws -> T {
        let data = try await object(from: request, emptyMeans: empty).data
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw invalid(field(context.codingPath + [key]), "is required")
        } catch let DecodingError.typeMismatch(expected, context) {
            throw invalid(field(context.codingPath), "must be \(describe(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw invalid(field(context.codingPath), "must be \(describe(expected)), not null")
        } catch let DecodingError.dataCorrupted(context) {
            throw invalid(field(context.codingPath), context.debugDescription)
        }
    }

    /// 422 `VALIDATION_ERROR` with `details.field`.
    static func invalid(_ field: String, _ problem: String) -> APIError {
        APIError(.unprocessableContent, code: "VALIDATION_ERROR", message: "\(field) \(problem)", details: ["field": field])
    }

    /// `value` if it is a finite number within `range`, else 422 naming `field` (numbers become
    /// bytes, seconds or counts: a value past what they can hold must not reach them).
    static func bounded(_ value: Double, _ field: String, _ range: ClosedRange<Double>) throws -> Double {
        guard value.isFinite, range.contains(value) else {
            throw invalid(field, "must be a number from \(range.lowerBound.formatted()) to \(range.upperBound.formatted())")
        }
        return value
    }

    /// `value` as one of `T`'s cases, or 422 naming `field` and the allowed values.
    static func oneOf<T: RawRepresentable & CaseIterable>(_ value: String?, _ field: String, default fallback: T? = nil) throws -> T
    where T.RawValue == String {
        guard let value else {
            if let fallback { return fallback }
            throw invalid(field, "is required")
        }
        guard let parsed = T(rawValue: value) else {
            throw invalid(field, "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), not '\(value)'")
        }
        return parsed
    }

    private static func field(_ path: [any CodingKey]) -> String {
        path.isEmpty ? "body" : path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type: "an integer"
        case is Double.Type: "a number"
        default: "\(type)"
        }
    }
}
