using System.Net;
using Microsoft.Playwright;
using Tally.Dashboard;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// The dashboard at `/` (SPEC §3.6), in a real browser (Debian's Chromium driven by Playwright): a customer's key
/// shows what the API says of its organization, and a page that breaks its own content policy would log an error.
/// </summary>
public sealed class DashboardTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    private const int WaitMilliseconds = 30_000;

    [Fact]
    public async Task AKeyShowsItsOrganizationsBalanceUsageAndLedgerAndIsForgottenOnRequest()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 1000);
        (await server.ConsumeAsync(organization.Key, credits: 3)).Expect(HttpStatusCode.Created);
        (await server.ConsumeAsync(organization.Key, credits: 4)).Expect(HttpStatusCode.Created);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await browser.NewPageAsync();
        var errors = CollectErrors(page);

        await page.GotoAsync(server.BaseAddress.ToString());
        await Expect(page, "#service", "Service ready");
        await page.FillAsync("#key", organization.Key.SecretKey);
        await page.ClickAsync("#show");
        await Expect(page, "#remaining", "993");

        Assert.Equal(organization.Id, await page.InnerTextAsync("#organization-id"));
        Assert.Equal("7", await page.InnerTextAsync("#used"));
        Assert.Equal("1,000", await page.InnerTextAsync("#total"));
        Assert.Equal("0", await page.InnerTextAsync("#held"));
        var grant = await page.Locator("#grants tbody tr").AllInnerTextsAsync();
        Assert.Single(grant);
        Assert.StartsWith("allowance\t1,000\t993", grant[0]);
        var usage = await page.Locator("#usage tbody tr").AllInnerTextsAsync();
        Assert.Single(usage);
        Assert.Contains("\t7\t0\t2\t", usage[0]);
        // Newest first: the two consumptions, then the allowance's grant entry.
        var kinds = await page.Locator("#ledger tbody tr td:nth-child(3)").AllInnerTextsAsync();
        var credits = await page.Locator("#ledger tbody tr td:nth-child(4)").AllInnerTextsAsync();
        Assert.Equal(["consume", "consume", "grant"], kinds);
        Assert.Equal(["-4", "-3", "1,000"], credits);

        // The key stays for the tab: a reload shows the organization again without asking.
        await page.ReloadAsync();
        await Expect(page, "#remaining", "993");
        await page.ClickAsync("#forget");
        Assert.False(await page.IsVisibleAsync("#organization"));
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('tally.dashboard.key')"));
        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    [Fact]
    public async Task AKeyThatIsNotValidShowsTheApisOwnMessageAndNoFigures()
    {
        const string unknownKey = "sk_thisKeyWasNeverIssued0123456789";
        var refusal = await server.CallAsync(HttpMethod.Get, "/v1/balance", "Bearer " + unknownKey);
        refusal.Expect(HttpStatusCode.Unauthorized);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await browser.NewPageAsync();

        await page.GotoAsync(server.BaseAddress.ToString());
        await page.FillAsync("#key", unknownKey);
        await page.ClickAsync("#show");
        await page.WaitForSelectorAsync("#error", new PageWaitForSelectorOptions { State = WaitForSelectorState.Visible, Timeout = WaitMilliseconds });

        Assert.Equal(refusal.String("detail"), await page.InnerTextAsync("#error"));
        Assert.False(await page.IsVisibleAsync("#organization"));
    }

    [Fact]
    public async Task ASlowAnswerForTheKeyShownBeforeNeverReplacesTheFiguresOfTheKeyShownLast()
    {
        var slow = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var last = await server.CreateOrganizationAsync(creditsPerPeriod: 200);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await browser.NewPageAsync();
        var errors = CollectErrors(page);
        // The first key's three requests are held until the second key's figures are shown, then answered.
        var release = new TaskCompletionSource();
        var slowAnswered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slowRequests = 0;
        await page.RouteAsync("**/v1/**", async route =>
        {
            if (route.Request.Headers.TryGetValue("authorization", out var authorization) && authorization.Contains(slow.Key.SecretKey))
            {
                await release.Task;
                await route.ContinueAsync();
                // Balance, usage and ledger.
                if (Interlocked.Increment(ref slowRequests) == 3) slowAnswered.SetResult();
                return;
            }
            await route.ContinueAsync();
        });

        await page.GotoAsync(server.BaseAddress.ToString());
        await page.FillAsync("#key", slow.Key.SecretKey);
        await page.ClickAsync("#show");
        await page.FillAsync("#key", last.Key.SecretKey);
        await page.ClickAsync("#show");
        await Expect(page, "#remaining", "200");
        release.SetResult();
        await slowAnswered.Task.WaitAsync(TimeSpan.FromMilliseconds(WaitMilliseconds));
        await page.WaitForLoadStateAsync(LoadState.NetworkIdle, new PageWaitForLoadStateOptions { Timeout = WaitMilliseconds });

        Assert.Equal(last.Id, await page.InnerTextAsync("#organization-id"));
        Assert.Equal("200", await page.InnerTextAsync("#remaining"));
        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    [Fact]
    public async Task OlderLedgerEntriesLoadOnceHoweverQuicklyTheButtonIsClicked()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 1000);
        // The allowance's entry and 24 consumptions: a first page of 20 and an older one of 5.
        for (var index = 0; index < 24; index++) (await server.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await browser.NewPageAsync();

        await page.GotoAsync(server.BaseAddress.ToString());
        await page.FillAsync("#key", organization.Key.SecretKey);
        await page.ClickAsync("#show");
        await Expect(page, "#remaining", "976");
        await page.DblClickAsync("#older");
        await page.WaitForSelectorAsync("#older", new PageWaitForSelectorOptions { State = WaitForSelectorState.Hidden, Timeout = WaitMilliseconds });

        // Entry numbers are the ledger's, shared by every organization: 25 rows, each a different entry, newest first.
        var entries = (await page.Locator("#ledger tbody tr td:nth-child(1)").AllInnerTextsAsync()).Select(long.Parse).ToList();
        Assert.Equal(25, entries.Count);
        Assert.Equal(entries.OrderDescending().Distinct(), entries);
    }

    [Fact]
    public async Task AKeyWithCharactersNoKeyHasIsRefusedWithAMessageOnThePage()
    {
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await Chromium.LaunchAsync(playwright);
        var page = await browser.NewPageAsync();

        await page.GotoAsync(server.BaseAddress.ToString());
        await page.FillAsync("#key", "sk_é€");
        await page.ClickAsync("#show");
        await page.WaitForSelectorAsync("#error", new PageWaitForSelectorOptions { State = WaitForSelectorState.Visible, Timeout = WaitMilliseconds });

        Assert.StartsWith("A key is letters, digits and underscores", await page.InnerTextAsync("#error"));
    }

    [Fact]
    public async Task ThePageAndItsFilesAreServedWithAPolicyThatAllowsOnlyThisServer()
    {
        foreach (var (path, type) in new[] { ("/", "text/html"), ("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css"), ("/favicon.svg", "image/svg+xml") })
        {
            using var response = await server.SendAsync(HttpMethod.Get, path, authorization: null);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(type, response.Content.Headers.ContentType?.MediaType);
            Assert.Equal(DashboardApi.ContentSecurityPolicy, response.Headers.GetValues("Content-Security-Policy").Single());
            Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        }
        var openApi = await server.CallAsync(HttpMethod.Get, "/openapi/v1.json", authorization: null);
        Assert.DoesNotContain("dashboard.js", openApi.Text);
    }

    private static async Task Expect(IPage page, string selector, string text) =>
        await page.WaitForFunctionAsync("([selector, text]) => document.querySelector(selector)?.textContent === text",
            new object[] { selector, text }, new PageWaitForFunctionOptions { Timeout = WaitMilliseconds });

    /// <summary>Console errors and uncaught exceptions: a script or style the content policy blocks is one.</summary>
    private static List<string> CollectErrors(IPage page)
    {
        var errors = new List<string>();
        page.Console += (_, message) => { if (message.Type == "error") errors.Add(message.Text); };
        page.PageError += (_, error) => errors.Add(error);
        return errors;
    }
}
