#!/usr/bin/env python3
"""Renders the marking-guide fixtures: one structured description per guide, written out
in that guide's own layout (HTML for the DOCX/PDF ones, Markdown, plain text in UTF-8,
Latin-1 or UTF-16) plus the items a perfect extractor would return (<name>.expected.json).

Run through scripts/make-fixtures.sh, which converts the HTML with LibreOffice.
The item data never passes through GradeLab's own code, so the expected JSON is an
independent answer key for the parser and the LLM.
"""
import html
import json
import pathlib
import sys

OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/guides")


def item(label, question, answer, marks, criteria, stem=None):
    return dict(label=label, question=question, answer=answer, marks=marks,
                criteria=criteria, stem=stem)


GUIDES = []

# 1. Biology, DOCX: "Question 1" headings, (a)/(b) parts, "[N marks]", bullet mark scheme.
GUIDES.append(dict(
    name="biology_mock_2026", fmt="docx", layout="bio",
    title="Biology mock examination 2026 — Mark scheme",
    preamble=["Paper 1: Cells, transport and enzymes", "Time allowed: 45 minutes. Total for paper: 16 marks.",
              "Accept any wording that conveys the same meaning. Do not award marks for answers that contradict themselves."],
    items=[
        item("1(a)", "Name the structure that controls what enters and leaves the cell.",
             "The cell membrane.", 1,
             [("cell membrane or plasma membrane", 1)],
             stem="The diagram shows an animal cell seen with a light microscope."),
        item("1(b)", "Explain why a muscle cell contains many mitochondria.",
             "Mitochondria are the site of aerobic respiration, which releases energy. Muscle cells contract and need a lot of energy, so they need many mitochondria to release enough of it.", 3,
             [("mitochondria are the site of aerobic respiration", 1),
              ("respiration releases energy", 1),
              ("muscle contraction needs a lot of energy", 1)],
             stem="The diagram shows an animal cell seen with a light microscope."),
        item("2", "Describe how oxygen moves from the alveoli into the blood.",
             "Oxygen diffuses from the alveoli into the blood, down a concentration gradient from a high concentration in the air to a low concentration in the blood. It crosses the walls of the alveolus and the capillary, which are each one cell thick, so the diffusion distance is short.", 4,
             [("by diffusion", 1),
              ("from a high to a low concentration, down a concentration gradient", 1),
              ("walls are one cell thick", 1),
              ("so the diffusion distance is short", 1)]),
        item("3", "An amylase solution was kept at 60 °C for ten minutes and then cooled to 37 °C. Explain why it no longer breaks down starch.",
             "The high temperature changed the shape of the active site, so the enzyme is denatured. Starch no longer fits the active site, so no enzyme–substrate complexes form. Denaturation is permanent, so cooling does not restore activity.", 4,
             [("the enzyme is denatured", 1),
              ("the shape of the active site has changed", 1),
              ("starch no longer fits, so no enzyme–substrate complex forms", 1),
              ("denaturation is irreversible, so cooling does not help", 1)]),
        item("4", "Give two ways in which a plant cell differs from an animal cell.",
             "A plant cell has a cellulose cell wall and chloroplasts; an animal cell has neither. Plant cells also have a permanent vacuole.", 2,
             [("cell wall", 1), ("chloroplasts or a permanent vacuole", 1)]),
        item("5", "Suggest why root hair cells have a large surface area.",
             "A large surface area increases the rate of absorption of water by osmosis and of mineral ions by active transport.", 2,
             [("increases the rate of absorption", 1), ("of water or mineral ions", 1)]),
    ]))

# 2. Chemistry, PDF: "1(a)" labels inline, "Answer:", "Marking points:" with [1].
GUIDES.append(dict(
    name="chemistry_rates_unit3", fmt="pdf", layout="chem",
    title="Chemistry Unit 3: Rates and equilibrium",
    preamble=["End-of-unit test — marking guide", "30 minutes, 14 marks. Award each marking point once only."],
    items=[
        item("1(a)", "Define the rate of a chemical reaction.",
             "The change in the concentration of a reactant or a product per unit time.", 2,
             [("change in amount or concentration of a reactant or product", 1), ("per unit time", 1)]),
        item("1(b)", "Explain, in terms of particles, why increasing the temperature increases the rate of reaction.",
             "The particles have more kinetic energy, so they move faster and collide more often. A greater proportion of the collisions have energy equal to or greater than the activation energy, so more collisions are successful.", 3,
             [("particles have more kinetic energy", 1),
              ("more frequent collisions", 1),
              ("a greater proportion of collisions have at least the activation energy", 1)]),
        item("2(a)", "State Le Chatelier's principle.",
             "If a system at equilibrium is subjected to a change, the position of equilibrium shifts to oppose the change.", 2,
             [("system at equilibrium subjected to a change", 1), ("equilibrium shifts to oppose the change", 1)]),
        item("2(b)", "Explain the effect of adding a catalyst on the position of equilibrium.",
             "A catalyst has no effect on the position of equilibrium because it speeds up the forward and reverse reactions equally; equilibrium is reached sooner.", 2,
             [("no effect on the position of equilibrium", 1), ("forward and reverse rates increase equally", 1)]),
        item("3", "A reaction produced 48 cm³ of gas in 60 seconds. Calculate the mean rate of reaction in cm³/s.",
             "Mean rate = 48 ÷ 60 = 0.8 cm³/s.", 2,
             [("correct method: 48 ÷ 60", 1), ("0.8 cm³/s", 1)]),
        item("4", "Suggest why powdered marble reacts faster with acid than marble chips of the same mass.",
             "Powder has a larger surface area to volume ratio, so more particles are exposed and collisions are more frequent.", 3,
             [("larger surface area", 1), ("more particles exposed to the acid", 1), ("more frequent collisions", 1)]),
    ]))

# 3. Physics, PDF: "Q1" headings, "(Total: N marks)", "Expected answer:", "1 mark – …".
GUIDES.append(dict(
    name="physics_forces_motion", fmt="pdf", layout="physics",
    title="Physics — Forces and motion: assessment guidance",
    preamble=["Key Stage 4 physics, topic test 2", "Examiners: use the guidance below; accept equivalent answers."],
    items=[
        item("1", "State Newton's first law of motion.",
             "An object remains at rest or moves at a constant velocity unless a resultant force acts on it.", 2,
             [("object stays at rest or at constant velocity", 1), ("unless a resultant force acts", 1)]),
        item("2", "A car of mass 1200 kg accelerates at 2.5 m/s². Calculate the resultant force on the car.",
             "F = m × a = 1200 × 2.5 = 3000 N.", 3,
             [("uses F = m × a", 1), ("substitution 1200 × 2.5", 1), ("3000 N with unit", 1)]),
        item("3", "Explain why a skydiver reaches terminal velocity.",
             "As the skydiver falls faster, air resistance increases until it equals the weight. The resultant force is then zero, so the skydiver stops accelerating and falls at a constant speed.", 3,
             [("air resistance increases with speed", 1), ("air resistance becomes equal to weight", 1),
              ("resultant force is zero, so no acceleration", 1)]),
        item("4", "Describe the difference between speed and velocity.",
             "Speed is a scalar: it has magnitude only. Velocity is a vector: it has magnitude and direction.", 2,
             [("speed is a scalar, magnitude only", 1), ("velocity is a vector with direction", 1)]),
    ]))

# 4. History, Markdown: "### Question 1 (4 marks)", **Model answer:**, criteria "— N marks".
GUIDES.append(dict(
    name="history_cold_war", fmt="md", layout="history",
    title="History: The Cold War, 1945–1991",
    preamble=["Marking guide for the Year 11 assessment. Credit valid points not listed here."],
    items=[
        item("1", "Describe two features of the Berlin Blockade of 1948–49.",
             "Stalin cut off all road, rail and canal routes into West Berlin in June 1948. The Western Allies responded with the Berlin Airlift, flying in food and fuel for about eleven months until the blockade was lifted in May 1949.", 4,
             [("identifies a first feature, such as the closing of road, rail and canal links", 1),
              ("supporting detail for the first feature", 1),
              ("identifies a second feature, such as the Berlin Airlift", 1),
              ("supporting detail for the second feature", 1)]),
        item("2", "Explain why the Cuban Missile Crisis of 1962 brought the world close to nuclear war.",
             "Soviet missiles in Cuba could reach most American cities within minutes. Kennedy ordered a naval quarantine, and Soviet ships approached the line while a U-2 was shot down, so one mistake could have started a war. Both leaders were under pressure not to back down.", 6,
             [("explains the threat of missiles close to the USA", 2),
              ("explains the naval quarantine and the risk of confrontation at sea", 2),
              ("explains pressure on both leaders not to appear weak", 2)]),
        item("3", "How far was the arms race the main cause of tension between the superpowers in the 1950s? Explain your answer.",
             "The arms race raised tension, as each side built more powerful weapons such as the hydrogen bomb and feared the other would strike first. However, ideological rivalry and events such as the Hungarian uprising of 1956 and the U-2 incident also caused tension, so the arms race was one cause among several.", 10,
             [("explains how the arms race caused tension", 3),
              ("explains other causes such as ideology or crises", 3),
              ("reaches a supported judgement on how far", 4)]),
    ]))

# 5. Maths, TXT (UTF-8): "Q1." with "(N marks)", "Solution:", M1/A1/B1 codes.
GUIDES.append(dict(
    name="maths_algebra_homework", fmt="txt", encoding="utf-8", layout="maths",
    title="Year 9 Algebra — Homework 4 marking guide",
    preamble=["M = method mark, A = accuracy mark (depends on M), B = independent mark."],
    items=[
        item("1", "Solve 3x + 7 = 22.", "3x = 15, so x = 5.", 2,
             [("subtracts 7 from both sides to get 3x = 15", 1), ("x = 5", 1)]),
        item("2", "Expand and simplify (x + 3)(x − 5).", "x² − 5x + 3x − 15 = x² − 2x − 15.", 2,
             [("at least three of the four terms correct", 1), ("x² − 2x − 15", 1)]),
        item("3", "Factorise fully 6x² + 9x.", "3x(2x + 3).", 2,
             [("a correct partial factorisation such as 3(2x² + 3x)", 1), ("3x(2x + 3)", 1)]),
        item("4", "The sum of three consecutive integers is 72. Find the three integers.",
             "n + (n + 1) + (n + 2) = 72, so 3n + 3 = 72, 3n = 69 and n = 23. The integers are 23, 24 and 25.", 3,
             [("forms the equation n + (n + 1) + (n + 2) = 72", 1), ("simplifies to 3n + 3 = 72", 1), ("23, 24 and 25", 1)]),
        item("5", "Make r the subject of the formula A = πr².", "r² = A ÷ π, so r = √(A ÷ π).", 2,
             [("divides by π", 1), ("r = √(A ÷ π)", 1)]),
    ]))

# 6. Geography, TXT in Latin-1 (ISO-8859-1): accented place names, "[N marks]", "*" bullets.
GUIDES.append(dict(
    name="geography_rivers_latin1", fmt="txt", encoding="latin-1", layout="geo",
    title="Geography: Rivers of the world - mark scheme",
    preamble=["Fieldwork unit, Année 10 exchange group (Zürich / Lyon)."],
    items=[
        item("1", "Name the river that flows through Lyon and Genève.", "The Rhône.", 1,
             [("Rhône", 1)]),
        item("2", "Describe two features of the lower course of the Río Paraná.",
             "In its lower course the river is wide and deep and flows over a gentle gradient. It forms a large delta where it meets the Río de la Plata, with meanders and flood plains.", 4,
             [("wide and deep channel", 1), ("gentle gradient", 1), ("delta at the mouth", 1), ("meanders or flood plains", 1)]),
        item("3", "Explain how an ox-bow lake forms.",
             "Erosion on the outside of a meander bend and deposition on the inside narrow the neck of the meander. During a flood the river cuts through the neck, and deposition seals off the old bend, leaving an ox-bow lake.", 4,
             [("erosion on the outer bend", 1), ("deposition on the inner bend", 1),
              ("the neck is cut through during a flood", 1), ("deposition seals off the old meander", 1)]),
        item("4", "Suggest one reason why the São Francisco river is important to people in north-east Brazil.",
             "It supplies water for irrigation in a dry region, and its dams generate hydroelectric power.", 2,
             [("a valid use such as irrigation or hydroelectric power", 1), ("linked to the dry climate of the region", 1)]),
    ]))

# 7. Computing, TXT in UTF-16 LE with BOM: "Question N (N marks)", numbered criteria "1)".
GUIDES.append(dict(
    name="computing_networks_utf16", fmt="txt", encoding="utf-16", layout="computing",
    title="Computer Science — Networks and protocols: marking guide",
    preamble=["Section B. Answer all questions. Symbols used: → means 'leads to'."],
    items=[
        item("1", "State what is meant by a protocol.",
             "A protocol is a set of rules that govern how data is transmitted between devices.", 2,
             [("a set of rules", 1), ("for transmitting data between devices", 1)]),
        item("2", "Explain why data is split into packets before it is sent across the internet.",
             "Packets can take different routes, so the network is used efficiently and congestion is avoided. If a packet is lost only that packet is resent, not the whole file.", 3,
             [("packets can take different routes", 1), ("avoids congestion and uses the network efficiently", 1),
              ("only lost packets need to be resent", 1)]),
        item("3", "Describe the role of DNS when a user types a web address.",
             "The browser sends the domain name to a DNS server, which looks up the matching IP address and returns it → the browser then connects to that IP address.", 3,
             [("domain name sent to a DNS server", 1), ("server looks up the IP address", 1), ("IP address returned to the browser", 1)]),
    ]))

# 8. English literature, DOCX: Word auto-numbered questions, "Indicative content:", AO criteria.
GUIDES.append(dict(
    name="english_macbeth", fmt="docx", layout="english",
    title="English Literature: Macbeth — marking guidance",
    preamble=["Component 1, Section A. Examiners should reward a range of valid interpretations."],
    items=[
        item("1", "How does Shakespeare present Lady Macbeth as a powerful character in Act 1 Scene 5?",
             "Lady Macbeth calls on spirits to unsex her, showing her wish to reject feminine weakness. She plans the murder and controls Macbeth, telling him to look like the innocent flower but be the serpent under it.", 12,
             [("AO1: informed personal response with references to the text", 4),
              ("AO2: analysis of language, form and structure", 4),
              ("AO3: understanding of context such as gender roles", 4)]),
        item("2", "Explore how the theme of guilt is presented in the play.",
             "Macbeth hallucinates a dagger and Banquo's ghost, and Lady Macbeth sleepwalks trying to wash imaginary blood from her hands. Guilt destroys both characters' peace of mind.", 12,
             [("AO1: response to the task with relevant references", 4),
              ("AO2: analysis of the presentation of guilt", 4),
              ("AO3: context such as the divine right of kings", 4)]),
        item("3", "Write down one quotation that shows Macbeth's ambition.",
             "\"I have no spur to prick the sides of my intent, but only vaulting ambition.\"", 1,
             [("any accurate quotation showing ambition", 1)]),
    ]))


def marks_word(n):
    return "mark" if n == 1 else "marks"


def fmt_num(n):
    return str(int(n)) if float(n).is_integer() else str(n)


def expected(g):
    items = []
    for it in g["items"]:
        q = it["question"] if not it["stem"] else it["stem"] + "\n" + it["question"]
        items.append(dict(label=it["label"], question=q, model_answer=it["answer"],
                          max_marks=it["marks"],
                          criteria=[dict(description=d, marks=m) for d, m in it["criteria"]]))
    return dict(title=g["title"], file=f"{g['name']}.{g['fmt']}", items=items)


def groups(g):
    """Yields (parent_number, stem, [items]) in order."""
    out = []
    for it in g["items"]:
        parent = it["label"].split("(")[0]
        if out and out[-1][0] == parent:
            out[-1][2].append(it)
        else:
            out.append((parent, it["stem"], [it]))
    return out


def part(label):
    return label[len(label.split("(")[0]):]


def render_bio(g):
    h = [f"<h1>{html.escape(g['title'])}</h1>"] + [f"<p>{html.escape(p)}</p>" for p in g["preamble"]]
    for num, stem, its in groups(g):
        h.append(f"<h2>Question {num}</h2>")
        if stem:
            h.append(f"<p>{html.escape(stem)}</p>")
        for it in its:
            lead = part(it["label"]) + " " if part(it["label"]) else ""
            h.append(f"<p>{lead}{html.escape(it['question'])} [{it['marks']} {marks_word(it['marks'])}]</p>")
            h.append(f"<p><b>Model answer:</b> {html.escape(it['answer'])}</p>")
            h.append("<p><b>Mark scheme:</b></p><ul>")
            h += [f"<li>{html.escape(d)} ({m} {marks_word(m)})</li>" for d, m in it["criteria"]]
            h.append("</ul>")
    h.append("<p><i>End of mark scheme</i></p>")
    return h


def render_chem(g):
    h = [f"<h1>{html.escape(g['title'])}</h1>"] + [f"<p>{html.escape(p)}</p>" for p in g["preamble"]]
    for it in g["items"]:
        h.append(f"<p><b>{it['label']}</b> {html.escape(it['question'])} [{it['marks']} {marks_word(it['marks'])}]</p>")
        h.append(f"<p>Answer: {html.escape(it['answer'])}</p>")
        h.append("<p>Marking points:</p><ul>")
        h += [f"<li>{html.escape(d)} [{m}]</li>" for d, m in it["criteria"]]
        h.append("</ul>")
    return h


def render_physics(g):
    h = [f"<h1>{html.escape(g['title'])}</h1>"] + [f"<p>{html.escape(p)}</p>" for p in g["preamble"]]
    for it in g["items"]:
        h.append(f"<h3>Q{it['label']}</h3>")
        h.append(f"<p>{html.escape(it['question'])}</p>")
        h.append(f"<p>(Total: {it['marks']} {marks_word(it['marks'])})</p>")
        h.append(f"<p><i>Expected answer:</i> {html.escape(it['answer'])}</p>")
        h.append("<p>Award marks for:</p>")
        h += [f"<p>{m} {marks_word(m)} – {html.escape(d)}</p>" for d, m in it["criteria"]]
    return h


def render_english(g):
    h = [f"<h1>{html.escape(g['title'])}</h1>"] + [f"<p>{html.escape(p)}</p>" for p in g["preamble"]]
    for it in g["items"]:
        h.append(f"<ol start=\"{it['label']}\"><li>{html.escape(it['question'])} ({it['marks']} {marks_word(it['marks'])})</li></ol>")
        h.append(f"<p><b>Indicative content:</b> {html.escape(it['answer'])}</p>")
        h.append("<p><b>Assessment criteria:</b></p><ul>")
        h += [f"<li>{html.escape(d)} ({m} {marks_word(m)})</li>" for d, m in it["criteria"]]
        h.append("</ul>")
    return h


def render_history(g):
    t = [f"# {g['title']}", ""] + [p + "\n" for p in g["preamble"]]
    for it in g["items"]:
        t += [f"### Question {it['label']} ({it['marks']} {marks_word(it['marks'])})", "", it["question"], "",
              f"**Model answer:** {it['answer']}", "", "**Mark scheme:**", ""]
        t += [f"- {d} — {m} {marks_word(m)}" for d, m in it["criteria"]]
        t.append("")
    t.append("---\n\n*Total: 20 marks*")
    return t


def render_maths(g):
    t = [g["title"], "=" * len(g["title"]), ""] + g["preamble"] + [""]
    for it in g["items"]:
        t.append(f"Q{it['label']}. {it['question']} ({it['marks']} {marks_word(it['marks'])})")
        t.append(f"Solution: {it['answer']}")
        t.append("Marks:")
        codes = ["M1"] * (len(it["criteria"]) - 1) + ["A1"]
        if len(it["criteria"]) == 3:
            codes = ["B1", "M1", "A1"]
        t += [f"  {c} {d}" for c, (d, m) in zip(codes, it["criteria"])]
        t.append("")
    return t


def render_geo(g):
    t = [g["title"].upper(), ""] + g["preamble"] + [""]
    for it in g["items"]:
        t += [f"Question {it['label']}  [{it['marks']} {marks_word(it['marks'])}]", it["question"], "",
              "Model answer:", it["answer"], "", "Mark scheme:"]
        t += [f"  * {d} [{m}]" for d, m in it["criteria"]]
        t.append("")
    return t


def render_computing(g):
    t = [g["title"], ""] + g["preamble"] + [""]
    for it in g["items"]:
        t += [f"Question {it['label']} ({it['marks']} {marks_word(it['marks'])})", it["question"],
              f"Model answer: {it['answer']}", "Marking criteria:"]
        t += [f"{i}) {d} ({m})" for i, (d, m) in enumerate(it["criteria"], 1)]
        t.append("")
    return t


RENDER = dict(bio=render_bio, chem=render_chem, physics=render_physics, english=render_english,
              history=render_history, maths=render_maths, geo=render_geo, computing=render_computing)


def main():
    src = OUT / "src"
    src.mkdir(parents=True, exist_ok=True)
    for g in GUIDES:
        body = RENDER[g["layout"]](g)
        if g["fmt"] in ("docx", "pdf"):
            doc = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(g["title"]) +
                   "</title></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
            (src / f"{g['name']}.html").write_text(doc, encoding="utf-8")
        else:
            text = "\n".join(body) + "\n"
            enc = g.get("encoding", "utf-8")
            data = text.encode("utf-16") if enc == "utf-16" else text.encode(enc)
            if enc == "utf-16" and not data.startswith(b"\xff\xfe"):
                raise SystemExit("expected a little-endian BOM")
            (OUT / f"{g['name']}.{g['fmt']}").write_bytes(data)
        (OUT / f"{g['name']}.expected.json").write_text(
            json.dumps(expected(g), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"{g['name']}.{g['fmt']}")


if __name__ == "__main__":
    main()
