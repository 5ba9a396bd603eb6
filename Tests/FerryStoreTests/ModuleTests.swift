import Testing
@testable import FerryStore

@Test func moduleIsNamed() {
    #expect(FerryStoreModule.name == "FerryStore")
}
