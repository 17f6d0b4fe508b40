import Foundation
import Hummingbird

/// Seed 002's pagination of list endpoints: `page` (from 1), `limit` (1-100, default 20),
/// `sort` (a field of the items) and `order` (`asc` or `desc`). Lists are paged only when the
/// client asks (`page` or `limit` given), and the array is sliced in place, so responses keep
/// the seeds' shapes; a `pagination` object is added beside it.
struct PageRequest: Sendable {
    static let maxLimit = 100

    var page = 1
    var limit = 20
    var sort: String?
    var descending = false
    /// Whether the client asked for a page at all.
    var requested = false

    init(_ query: [String: String]) throws {
        if let raw = query["page"] {
            guard let value = Int(raw), value >= 1 else { throw RequestBody.invalid("page", "must be an integer >= 1, not '\(raw)'") }
            page = value
            requested = true
        }
        if let raw = query["limit"] {
            guard let value = Int(raw), value >= 1 else { throw RequestBody.invalid("limit", "must be an integer from 1 to \(Self.maxLimit), not '\(raw)'") }
            limit = min(value, Self.maxLimit)
            requested = true
        }
        sort = query["sort"]
        if let raw = query["order"] {
            guard raw == "asc" || raw == "desc" else { throw RequestBody.invalid("order", "must be asc or desc, not '\(raw)'") }
            descending = raw == "desc"
        }
    }

    init(request: Request) throws {
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
        try self.init(query)
    }

    /// `items` sorted as asked and cut to the page, with the page's description (nil when
    /// the client did not ask for a page). Sorting compares the items' JSON fields.
    func apply<Item: Encodable>(_ items: [Item]) throws -> (items: [Item], pagination: Pagination?) {
        var ordered = items
        if let sort {
            let keys = try items.map { item -> SortKey in
                let object = try JSONSerialization.jsonObject(with: SidecarJSON.encoder.encode(item)) as? [String: Any]
                guard let object, object.keys.contains(sort) else {
                    throw RequestBody.invalid("sort", "'\(sort)' is not a field of these items")
                }
                return SortKey(object[sort])
            }
            let order = keys.indices.sorted { descending ? keys[$1] < keys[$0] : keys[$0] < keys[$1] }
            ordered = order.map { items[$0] }
        }
        guard requested else { return (ordered, nil) }
        let pages = max(1, (ordered.count + limit - 1) / limit)
        let (offset, overflow) = (page - 1).multipliedReportingOverflow(by: limit)
        let start = overflow ? ordered.count : min(ordered.count, offset)
        let slice = Array(ordered[start..<min(ordered.count, start + limit)])
        return (slice, Pagination(page: page, limit: limit, total: ordered.count, pages: pages, hasNext: page < pages, hasPrev: page > 1))
    }

    /// A JSON value that sorts: nulls first, then numbers, then strings.
    private struct SortKey: Comparable {
        let rank: Int, number: Double, text: String
        init(_ value: Any?) {
            switch value {
            case let n as NSNumber: (rank, number, text) = (1, n.doubleValue, "")
            case let s as String: (rank, number, text) = (2, 0, s)
            default: (rank, number, text) = (0, 0, "")
            }
        }
        static func < (a: SortKey, b: SortKey) -> Bool { (a.rank, a.number, a.text) < (b.rank, b.number, b.text) }
    }
}

struct Pagination: Encodable {
    let page: Int, limit: Int, total: Int, pages: Int, hasNext: Bool, hasPrev: Bool
}
