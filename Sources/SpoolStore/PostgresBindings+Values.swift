import PostgresNIO

extension PostgresBindings {
    /// A prepared statement's bindings, in the order of its `$n`: one line instead of an append each.
    static func values<each Value: PostgresDynamicTypeEncodable>(_ values: repeat each Value) -> PostgresBindings {
        var bindings = PostgresBindings()
        repeat bindings.append(each values)
        return bindings
    }
}
