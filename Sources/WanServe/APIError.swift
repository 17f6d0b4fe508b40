import Foundation
import Hummingbird
import WanCore

/// An error the API returns: an HTTP status and the seed's envelope fields.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public let details: [String: String]
    /// Headers the error response carries besides the envelope (`Retry-After`, rate limits).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, code: String, message: String, details: [String: String] = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
    }

    static func notFound(_ what: String) -> APIError { APIError(.notFound, code: "NOT_FOUND", message: "\(what) not found") }

    /// The API form of a cache or manifest error: invalid input is 4xx, a failed operation 5xx.
    init(_ error: any CodedError) {
        let status: HTTPResponse.Status = switch error.code {
        case .modelNotFound, .variantNotFound: .notFound
        case .invalidModelID: .unprocessableContent
        case .configInvalid, .manifestInvalid, .manifestNotFound, .schemaVersion: .unprocessableContent
        case .noSpace, .lockTimeout, .sourceUnavailable: .serviceUnavailable
        default: .internalServerError
        }
        self.init(status, code: error.code.rawValue, message: error.description)
    }
}

/// `{"error": {code, message, details, timestamp, request_id}, "detail": message}`: seed 002's
/// envelope, plus seed 003's FastAPI-style `detail`.
struct ErrorEnvelope: ResponseEncodable {
    struct Body: Encodable {
        let code: String
        let message: String
        let details: [String: String]
        let timestamp: Date
        let requestID: String

    }

    let error: Body
    let detail: String
}
