import SpoolCore
import Testing

/// The SpoolError `make` throws, or nil when it throws nothing (any other error is recorded).
func refusal(_ make: () throws -> Void) -> SpoolError? {
    do {
        try make()
        return nil
    } catch let error as SpoolError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}
