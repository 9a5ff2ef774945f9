using Microsoft.Playwright;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// The browsable API reference at /docs, opened in a real browser (Debian's Chromium driven by Playwright):
/// it must render the operations of the OpenAPI document, not only serve HTML.
/// </summary>
public sealed class ReferencePageTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    [Fact]
    public async Task TheReferencePageRendersEveryTagAndTheConsumeOperationInABrowser()
    {
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await browser.NewPageAsync();
        await page.GotoAsync(new Uri(server.BaseAddress, "/docs/index.html").ToString());

        // Swagger UI fetches /openapi/v1.json and renders one section per tag, then one block per operation.
        await page.WaitForSelectorAsync("#operations-Organization-Consume", new PageWaitForSelectorOptions { Timeout = 30_000 });
        var tags = await page.Locator(".opblock-tag").AllInnerTextsAsync();
        var title = await page.Locator(".info .title").InnerTextAsync();

        Assert.Contains(tags, tag => tag.StartsWith("Compatibility", StringComparison.Ordinal));
        Assert.Contains(tags, tag => tag.StartsWith("Organization", StringComparison.Ordinal));
        Assert.Contains(tags, tag => tag.StartsWith("Admin", StringComparison.Ordinal));
        Assert.StartsWith("Tally", title);
        Assert.Equal(1, await page.Locator("#operations-Compatibility-CheckBalance").CountAsync());
    }
}
