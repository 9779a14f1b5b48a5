// Covers src/request/shell-words.ts: POSIX word splitting without a shell, and quoting round trips.
import { describe, expect, test } from "bun:test";
import { quoteShellWord, ShellWordsError, splitShellWords } from "../../src/request/shell-words.ts";

describe("splitShellWords", () => {
  test("single-quoted word with spaces is one word", () => {
    expect(splitShellWords("'arg with space'")).toEqual(["arg with space"]);
  });

  test("plain words split on blanks (spaces, tabs, newlines, repeated)", () => {
    expect(splitShellWords("--lr 0.1")).toEqual(["--lr", "0.1"]);
    expect(splitShellWords("  a   b\tc\nd  ")).toEqual(["a", "b", "c", "d"]);
    expect(splitShellWords("--tag alpha --msg 'arg with space'")).toEqual([
      "--tag",
      "alpha",
      "--msg",
      "arg with space",
    ]);
  });

  test("empty and blank input give no words", () => {
    expect(splitShellWords("")).toEqual([]);
    expect(splitShellWords("   \t\n ")).toEqual([]);
  });

  test("empty quotes are one empty word", () => {
    expect(splitShellWords("''")).toEqual([""]);
    expect(splitShellWords('""')).toEqual([""]);
    expect(splitShellWords("a '' b")).toEqual(["a", "", "b"]);
  });

  test('double quotes keep spaces and honour \\" \\\\ \\$ \\` escapes only', () => {
    expect(splitShellWords('"arg with space"')).toEqual(["arg with space"]);
    expect(splitShellWords('"say \\"hi\\""')).toEqual(['say "hi"']);
    expect(splitShellWords('"back\\\\slash"')).toEqual(["back\\slash"]);
    expect(splitShellWords('"cost \\$5"')).toEqual(["cost $5"]);
    expect(splitShellWords('"tick \\`x\\`"')).toEqual(["tick `x`"]);
    // Other backslashes inside double quotes are literal.
    expect(splitShellWords('"a\\nb"')).toEqual(["a\\nb"]);
    expect(splitShellWords('"C:\\temp"')).toEqual(["C:\\temp"]);
  });

  test("double-quoted backslash-newline is a line continuation", () => {
    expect(splitShellWords('"a\\\nb"')).toEqual(["ab"]);
  });

  test("single quotes keep everything literal, backslashes included", () => {
    expect(splitShellWords("'a\\b'")).toEqual(["a\\b"]);
    expect(splitShellWords("'say \"hi\"'")).toEqual(['say "hi"']);
    expect(splitShellWords("'$HOME'")).toEqual(["$HOME"]);
  });

  test("unquoted backslashes escape the next character", () => {
    expect(splitShellWords("a\\ b")).toEqual(["a b"]);
    expect(splitShellWords("\\'quoted\\'")).toEqual(["'quoted'"]);
    expect(splitShellWords('\\"')).toEqual(['"']);
    expect(splitShellWords("a\\\\b")).toEqual(["a\\b"]);
    expect(splitShellWords("a\\\nb")).toEqual(["ab"]);
  });

  test("adjacent quoted and unquoted parts join into one word", () => {
    expect(splitShellWords("--msg='hello world'")).toEqual(["--msg=hello world"]);
    expect(splitShellWords("a'b'\"c\"d")).toEqual(["abcd"]);
    expect(splitShellWords("'it'\"'\"'s'")).toEqual(["it's"]);
  });

  test("nothing is expanded or executed", () => {
    expect(splitShellWords("$HOME")).toEqual(["$HOME"]);
    expect(splitShellWords('"$HOME"')).toEqual(["$HOME"]);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal text ${HOME} is the input under test
    expect(splitShellWords("${HOME}/x")).toEqual(["${HOME}/x"]);
    expect(splitShellWords("$(rm -rf /)")).toEqual(["$(rm", "-rf", "/)"]);
    expect(splitShellWords("`id`")).toEqual(["`id`"]);
    expect(splitShellWords("*.py ~")).toEqual(["*.py", "~"]);
    expect(splitShellWords("a;b|c&d")).toEqual(["a;b|c&d"]);
  });

  test("unterminated quotes throw ShellWordsError", () => {
    expect(() => splitShellWords("'abc")).toThrow(ShellWordsError);
    expect(() => splitShellWords('"abc')).toThrow(ShellWordsError);
    expect(() => splitShellWords("ok 'fine' \"broken")).toThrow(ShellWordsError);
    expect(() => splitShellWords('"ends with escaped quote\\"')).toThrow(ShellWordsError);
    expect(() => splitShellWords("'")).toThrow(/unterminated single quote/);
    expect(() => splitShellWords('"')).toThrow(/unterminated double quote/);
  });

  test("a trailing lone backslash is dropped, not an error", () => {
    expect(splitShellWords("abc\\")).toEqual(["abc"]);
  });
});

describe("quoteShellWord", () => {
  test("safe words are left bare", () => {
    for (const w of ["abc", "--lr", "0.1", "a/b.c", "key=value", "user@host:path", "50%", "a,b+c"]) {
      expect(quoteShellWord(w)).toBe(w);
    }
  });

  test("unsafe words are quoted", () => {
    expect(quoteShellWord("")).toBe("''");
    expect(quoteShellWord("a b")).toBe("'a b'");
    expect(quoteShellWord("$HOME")).toBe("'$HOME'");
  });

  const tricky = [
    "",
    " ",
    "arg with space",
    "  leading and trailing  ",
    "it's",
    "'",
    "''",
    '"',
    'say "hi"',
    "mixed 'single' and \"double\"",
    "$HOME",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal text ${PATH} is the input under test
    "${PATH}",
    "$(whoami)",
    "`id`",
    "back\\slash",
    "\\",
    "\\\\",
    "trailing\\",
    "tab\there",
    "new\nline",
    "\n",
    "*?[]{}~!#&;|<>()",
    "--flag=value with spaces",
    "ünïcödé",
    "日本語 テキスト",
    "emoji 🚀 rocket",
    "a'b\"c\\d$e`f",
    "-",
    "--",
    "%NAME%",
  ];

  test.each(tricky.map((s) => [s]))("round-trips %p", (s) => {
    expect(splitShellWords(quoteShellWord(s))).toEqual([s]);
  });

  test("a whole quoted command line round-trips word for word", () => {
    const line = tricky.map(quoteShellWord).join(" ");
    expect(splitShellWords(line)).toEqual(tricky);
  });
});
