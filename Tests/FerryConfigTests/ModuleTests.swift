import Testing
@testable import FerryConfig

@Test func moduleIsNamed() {
    #expect(FerryConfigModule.name == "FerryConfig")
}
