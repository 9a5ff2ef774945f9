using Microsoft.Playwright;

namespace Tally.Tests.Infrastructure;

/// <summary>Debian's Chromium driven by Playwright, for the pages Tally serves; .ci/run installs it.</summary>
public static class Chromium
{
    /// <summary>Debian's Chromium. Playwright's own browser download is not used.</summary>
    public const string ExecutablePath = "/usr/bin/chromium";

    public static async Task<IBrowser> LaunchAsync(IPlaywright playwright)
    {
        Assert.True(File.Exists(ExecutablePath), $"{ExecutablePath} is missing: install it with `apt-get install chromium` (.ci/run does).");
        return await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
    }
}
